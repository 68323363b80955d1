//! speckle-dfa (work in progress).
