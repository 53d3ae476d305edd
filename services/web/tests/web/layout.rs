//! The web service's module graph has no loops (see `pulse_test_support::layout`): handlers
//! import the shared state, the state imports no handler, and only the router knows them all.

#[test]
fn no_two_modules_depend_on_each_other() {
    pulse_test_support::layout::assert_no_module_loops(
        env!("CARGO_MANIFEST_DIR"),
        &["server", "state", "session", "ticket", "account", "api"],
    );
}
