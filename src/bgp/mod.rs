//! The edge half of BGP: TCP sessions ([`session`]), socket options such as TCP-MD5 and TTL
//! security ([`sockopt`], the only `unsafe`), and the speaker task that runs the pure core of
//! `starling_bgp` (codec, FSM, RIB, policy) over them ([`speaker`]), and BFD's UDP edge ([`bfd`]).

pub mod bfd;
pub mod session;
pub mod sockopt;
pub mod speaker;

/// Sleeps until `deadline`, or forever without one: the timer arm of the BGP speaker's and the
/// BFD task's `select!` loops.
pub(crate) async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
