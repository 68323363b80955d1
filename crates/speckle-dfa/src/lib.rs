//! # speckle-dfa
//!
//! The numerics of Direct Feedback Alignment (and of feedback alignment and backprop, the
//! references) for multi-layer perceptrons: the model, the training algorithms, the optimizers,
//! the activations, the alignment measure and the trainer's exact state. The random feedback
//! projection B·e comes from any [`speckle_hal::RandomProjector`]: the ideal digital Gaussian
//! projector, the simulated optical processing unit or a real device. Nothing here reads files,
//! opens devices or draws plots: runs, data and checkpoints are `speckle-runs`' job.
//!
//! ```
//! use ndarray::Array2;
//! use speckle_dfa::{AlgorithmKind, AlgorithmSpec, ModelSpec, OptimizerSpec, Trainer};
//! use speckle_projection::GaussianProjector;
//!
//! // DFA on a toy problem: 4 features, 2 classes, one hidden layer of 16, feedback from the
//! // digital Gaussian projector (2 → 16, seed 3).
//! let model = ModelSpec { hidden: vec![16], ..ModelSpec::default() };
//! let dfa = AlgorithmSpec { kind: AlgorithmKind::Dfa, ..AlgorithmSpec::default() };
//! let projector = Box::new(GaussianProjector::new(2, 16, 3)?);
//! let adam = OptimizerSpec { lr: 1e-2, ..OptimizerSpec::default() };
//! let mut trainer = Trainer::new(4, 2, &model, &dfa, &adam, 8, 200, 7, Some(projector))?;
//! let x = Array2::from_shape_fn((8, 4), |(i, j)| if (i % 2 == 0) == (j < 2) { 1.0 } else { 0.0 });
//! let labels: Vec<u8> = (0..8).map(|i| (i % 2) as u8).collect();
//! for _ in 0..200 {
//!     trainer.train_batch(x.view(), &labels)?;
//! }
//! assert!(trainer.evaluate(x.view(), &labels)?.accuracy > 0.99);
//! // Alignment of the DFA signal with the true backprop gradient at the hidden layer.
//! let alignment = trainer.alignment(x.view(), &labels)?;
//! assert!(alignment[0].cosine_mean.is_finite());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Compiles the function it wraps for AVX-512, AVX2 + FMA, SSE 4.2 and NEON, picked at run
/// time (`multiversion`). The crate's `"simd"` preset leaves AVX-512 out, which halves the width
/// of the elementwise passes (Adam's update among them) on CPUs that have it. Every version
/// gives bit-identical results: the kernels use IEEE add, multiply, divide and square root
/// only, and Rust never contracts a multiply and an add into an FMA.
macro_rules! simd_kernel {
    ($item:item) => {
        #[multiversion::multiversion(targets(
            "x86_64+avx512f+avx512bw+avx512cd+avx512dq+avx512vl",
            "x86_64+avx2+fma",
            "x86_64+sse4.2",
            "aarch64+neon",
        ))]
        $item
    };
}

pub mod activation;
pub mod alignment;
mod error;
mod linalg;
mod model;
pub mod optim;
pub mod spec;
pub mod stats;
pub mod trainer;
pub use alignment::LayerAlignment;
pub use error::DfaError;
pub use spec::{
    Activation, AlgorithmKind, AlgorithmSpec, FeedbackScale, Init, ModelSpec, OptimizerKind,
    OptimizerSpec, Schedule,
};
pub use trainer::{
    EvalStats, StateMeta, StepStats, Trainer, TrainerState, TrainerStateView,
    EXPLODED_LOSS_PER_SAMPLE,
};
