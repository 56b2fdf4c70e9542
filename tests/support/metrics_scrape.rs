//! Test-only: a daemon's Prometheus text from inside a network namespace (the lab daemons serve
//! it on 127.0.0.1:9091 in their node namespace), and one series' value from it.

#![allow(dead_code)]

use std::io::{Read, Write};

/// The body of `GET /metrics` on 127.0.0.1:`port` in `namespace`; None when it does not answer.
pub fn metrics_text(namespace: &str, port: u16) -> Option<String> {
    starling::netns::run_in(namespace, || -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .ok()?
}

/// The value of the line for `series` (name and labels exactly as exposed).
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    let wanted = format!("{series} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|value| value.trim().parse().ok())
}
