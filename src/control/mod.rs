//! The control plane: `tunlb adm`, the per-namespace control socket, the TOML config.
