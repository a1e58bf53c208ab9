//! The control plane for people and scripts: the Unix socket protocol ([`proto`]), its server
//! ([`server`]) and a blocking client ([`client`]).

pub mod client;
pub mod proto;
pub mod render;
pub mod server;
