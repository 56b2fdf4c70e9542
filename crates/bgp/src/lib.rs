//! Starling's BGP speaker core: pure, sans-IO, deterministic (no runtime, no sockets, no clock:
//! time is an input). The TCP session task and the speaker (listener, timers, peer set from
//! Calico resources) live in the edge crate's `bgp` module, built on top of this.
//!
//! # Pieces
//!
//! * [`codec`] — wire format (RFC 4271 §4 and extensions). [`codec::frame_length`] splits a
//!   byte stream; [`codec::Message::decode`] / [`codec::Message::encode`] convert one message,
//!   with [`codec::CodecOptions`] carrying what the session negotiated (4-octet AS). A decode
//!   error's [`codec::DecodeError::notification`] is the NOTIFICATION to send; UPDATE problems
//!   RFC 7606 lets the session survive are on [`codec::Update::problems`] with
//!   [`codec::Update::error_action`]. [`codec::pack_announcements`] /
//!   [`codec::pack_withdrawals`] pack many prefixes into as few UPDATEs as fit.
//! * [`fsm`] — one session's RFC 4271 §8 state machine: `fsm.handle(input, now) -> Vec<Output>`.
//!   Outputs ask to connect, send, close, start or stop a timer with a deadline, and report
//!   Established (with [`fsm::Negotiated`]) or Down (with a reason). Received UPDATEs and
//!   ROUTE-REFRESHes come out as outputs once the session is Established.
//!   [`fsm::collision_survivor`] decides which of two connections to a peer survives.
//! * [`rib`] — Adj-RIB-In, Loc-RIB with the decision process, Adj-RIB-Out with route
//!   reflection and export policy, and the graceful restart helper.
//! * [`peering`] — Calico's peering model (§6.3): which sessions this node runs.
//! * [`policy`] — Calico's export, import and kernel-programming rules as pure functions and as
//!   RIB policies; [`kernel`] — the routes they ask the kernel for.
//! * [`config`] — the speaker's configuration, computed from cluster state.
//!
//! # How a session task is expected to use it
//!
//! ```text
//! let mut fsm = Fsm::new(FsmConfig::new(local_as, peer_as, router_id));
//! for output in fsm.handle(Input::ManualStart, now) { perform(output) }
//! // perform(): Connect -> TcpStream::connect; Send(m) -> write m.encode(&negotiated options);
//! //            StartTimer{timer, deadline} -> arm; StopTimer -> disarm; CloseConnection -> drop.
//! // Bytes in: while let Some(len) = frame_length(&buffer)? { Message::decode(..) -> Input }
//! //   (a frame_length/decode error becomes Input::DecodeFailed(error)).
//! // Output::Established(n) -> rib.peer_established(id, PeerSession { router_id: n.peer_identifier,
//! //   families: n.families, graceful_restart: n.peer_graceful_restart }), then send
//! //   rib.export(id, &policy).encode(&n.codec_options()).
//! // Output::UpdateReceived(u) -> rib.apply_update(id, &u, &policy); the returned prefixes
//! //   changed best path (kernel routes to refresh); then export to every established peer.
//! // Output::Down { was_established: true, .. } -> rib.peer_down(id, graceful) where graceful is
//! //   whether the peer advertised graceful restart; arm its restart timer and call
//! //   rib.sweep_stale(id, None) when it fires.
//! ```
//!
//! Everything is deterministic: maps are `BTreeMap`s and time is always passed in.

pub mod bfd;
pub mod codec;
pub mod config;
pub mod filter;
pub mod fsm;
pub mod kernel;
pub mod peering;
pub mod policy;
pub mod rib;
