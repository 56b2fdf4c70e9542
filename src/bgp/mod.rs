//! The edge half of BGP: TCP sessions ([`session`]), socket options such as TCP-MD5 and TTL
//! security ([`sockopt`], the only `unsafe`), and the speaker task that runs the pure core of
//! `starling_bgp` (codec, FSM, RIB, policy) over them ([`speaker`]), and BFD's UDP edge ([`bfd`]).

pub mod bfd;
pub mod session;
pub mod sockopt;
pub mod speaker;
