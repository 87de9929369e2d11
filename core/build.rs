//! `sqlx::migrate!` embeds `migrations/` at compile time, but cargo does not
//! know that directory is an input: without this, adding a migration leaves
//! a stale binary that never applies it (what `sqlx migrate build-script`
//! generates).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
