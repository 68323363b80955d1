//! speckle-protocol (work in progress).
