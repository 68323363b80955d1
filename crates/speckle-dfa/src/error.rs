//! The trainer's error type, shared by the parameter checks ([`crate::spec`]) and the trainer.
//!
//! ```
//! use speckle_dfa::{DfaError, OptimizerSpec};
//!
//! let bad = OptimizerSpec { lr: -1.0, ..OptimizerSpec::default() };
//! let e: DfaError = bad.check().unwrap_err();
//! assert!(matches!(e, DfaError::InvalidSpec(_)));
//! assert!(e.to_string().starts_with("invalid parameter: ") && !e.to_string().contains('\n'));
//! ```

/// Errors of the trainer. Messages are one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DfaError {
    /// A parameter struct is out of range (names the key).
    #[error("invalid parameter: {0}")]
    InvalidSpec(String),
    /// Input data or a projector does not fit the network.
    #[error("{0}")]
    Mismatch(String),
    /// The loss became NaN or infinite, or exploded (a mean above
    /// [`crate::EXPLODED_LOSS_PER_SAMPLE`]); the parameters were left as they were before the step.
    #[error("training diverged at step {step}: loss is {loss}")]
    Diverged {
        /// Optimizer step (0-based) whose loss was not finite.
        step: u64,
        /// The batch's summed loss.
        loss: f64,
    },
    /// The random projector failed.
    #[error("random projector: {0}")]
    Projector(speckle_hal::Error),
    /// A trainer state does not fit this trainer or its file is corrupt.
    #[error("{0}")]
    State(String),
}

// By hand rather than `#[from]`, which would also make the projector's error the `source()` of
// a message that already contains it (printed twice by anyhow's `{:#}`).
impl From<speckle_hal::Error> for DfaError {
    fn from(e: speckle_hal::Error) -> Self {
        DfaError::Projector(e)
    }
}
