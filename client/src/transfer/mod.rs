//! File transfer, client side (issue 17). The protocol is the sans-IO
//! `parley_proto::transfer` core; this is its shell: storage ([`storage`]) and the
//! loop that runs a `Swarm` over byte streams ([`link`]). The QUIC transport and the
//! `send` / `--accept-files` commands are not built yet (docs/architecture.md, "File
//! transfer").

// Not wired to a command yet: only the tests use these until the transport lands.
#[cfg_attr(not(test), allow(dead_code))]
pub mod link;
#[cfg_attr(not(test), allow(dead_code))]
pub mod storage;
