//! Building a small bootable toplevel (kernel, initrd, kernel-params, init) with real nix.
