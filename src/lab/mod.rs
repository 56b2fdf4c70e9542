//! `starling lab`: a multi-node Starling cluster on one machine, built from network namespaces,
//! a private etcd and one `starling run` per node (see `topology` for names and addresses).

pub mod etcd;
pub mod netns_exec;
pub mod topology;
