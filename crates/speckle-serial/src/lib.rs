//! speckle-serial (work in progress).
