//! # speckle
//!
//! Facade of the speckle workspace: Direct Feedback Alignment training whose random feedback
//! projection is computed by an optical co-processor, simulated or real.
pub use speckle_dfa as dfa;
pub use speckle_hal as hal;
pub use speckle_projection as projection;
pub use speckle_protocol as protocol;
pub use speckle_serial as serial;
pub use speckle_sim as sim;

pub mod npy;
pub mod spec;
pub mod snr;
