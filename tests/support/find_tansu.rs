// Shared by `build.rs` (which decides whether the broker tests run) and the tests themselves
// (which start the broker), through `include!`, so both look in the same places.

/// Where the tansu binary is: `$TANSU`, on `PATH`, or in `~/.cargo/bin`.
pub fn tansu_binary() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}
