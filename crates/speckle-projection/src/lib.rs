//! speckle-projection (work in progress).
