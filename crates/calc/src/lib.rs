//! From cluster state to what this node should do (pure: no I/O, no runtime, no clock).
//!
//! Contract:
//! * [`state::ClusterState`] holds every watched resource, already validated by the watcher that
//!   delivered it; [`state::ClusterState::apply`] says whether an update changed anything.
//! * [`compute::compute`] turns the state, the local node and the configuration into the
//!   dataplane input ([`spec::DataplaneInput`]), the desired dataplane ([`desired::Desired`]:
//!   links, routes, neighbours, NAT, sysctls, MTU) and, with BGP, the speaker's configuration.
//!   It depends only on its arguments, never on history or on the order of collections.
//! * [`learned`] turns a learned BGP route into a kernel route under the rules a [`desired::Desired`]
//!   carries, so learned-route changes reach the kernel without a recomputation.
//! * [`services`] decides which Service addresses this node advertises, per Service and
//!   EndpointSlice event (no recomputation of anything else).
//! * [`floating`] decides the NATs and originated prefixes of this node's floating IPs.
//! * [`mtu`] decides host and pod MTUs; [`spec`] holds the plain data types and Starling's fixed
//!   names and numbers (route protocol, veth and VTEP naming).

pub mod compute;
pub mod desired;
pub mod floating;
pub mod learned;
pub mod mtu;
pub mod services;
pub mod spec;
pub mod state;
