//! speckle-sim (work in progress).
