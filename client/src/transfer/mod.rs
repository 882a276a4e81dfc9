//! File transfer, client side (issue 17). The protocol is the sans-IO
//! `parley_proto::transfer` core; this is its storage shell ([`storage`]). The
//! transport and the `send` / `--accept-files` commands are not built yet
//! (docs/architecture.md, "File transfer").

// Not wired to a command yet: only the tests use it until the transport lands.
#[cfg_attr(not(test), allow(dead_code))]
pub mod storage;
