//! The newcomer's demo: a sample upstream app that shows the identity headers it receives.
//! The set-up itself (token, configuration, certificates) is `certgate demo` in the CLI.

pub mod upstream;
