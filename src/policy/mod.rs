//! Network policy at the edge: the datastore inputs (`inputs`, `watch`), decoded into the pure
//! compiler (`starling_policy`) by the `engine`, whose programs the nftables dataplane
//! (`crate::dataplane::policy`) applies.

pub mod endpoints;
pub mod engine;
pub mod explain_view;
pub mod inputs;
pub mod watch;
