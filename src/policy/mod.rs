//! Network policy at the edge: the datastore inputs (`inputs`, `watch`), fed to the pure
//! compiler (`starling_policy`), whose programs the nftables dataplane applies.

pub mod inputs;
pub mod watch;
