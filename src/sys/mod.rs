//! Everything that talks to the kernel through `unsafe`: TUN, raw sockets, batched syscalls.
//! Every `unsafe` block carries a `// SAFETY:` comment.

pub mod cred;
