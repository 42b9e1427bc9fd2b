//! The `tunlb` binary: one command, several roles.

fn main() -> anyhow::Result<()> {
    Ok(())
}
