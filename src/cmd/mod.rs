//! One module per subcommand; each owns its clap `Args` struct and a `run` function.
pub mod args;
pub mod bench;
pub mod bench_scaling;
pub mod bench_suite;
pub mod data;
pub mod emulate;
pub mod info;
pub mod measure;
pub mod npy;
pub mod scheduler;
pub mod sweep;
pub mod train;
pub mod transform;
