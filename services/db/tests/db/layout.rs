//! This crate's module graph has no loops (see `pulse_test_support::layout`).

#[test]
fn no_two_modules_depend_on_each_other() {
    pulse_test_support::layout::assert_no_module_loops(
        env!("CARGO_MANIFEST_DIR"),
        &["migrate", "pool", "roles", "settings"],
    );
}
