// Package archive is berth's layer tar engine: it applies OCI layer tars onto
// directories (Apply), writes the layer that turns one tree into another
// (WriteDiff, or WriteOverlayDiff from an overlayfs upper directory), lists
// changes for `berth diff` (Changes, OverlayChanges) and copies paths in and
// out of a container's root for `berth cp` (TarPath, UntarInto).
//
// Security model: a layer tar is untrusted input. Every path is resolved
// inside the target root by the kernel (openat2 with RESOLVE_IN_ROOT, falling
// back to filepath-securejoin), every entry is then created relative to its
// parent directory's descriptor (mkdirat, openat with O_NOFOLLOW|O_EXCL,
// symlinkat, linkat, mknodat, fchownat with AT_SYMLINK_NOFOLLOW), and names
// whose ".." would climb above the root are refused. A symlink placed by the
// layer itself is therefore followed only as if the root were "/", and a
// final component is never followed. Tree walks (diffs, TarPath) also go
// through directory descriptors and never follow symlinks.
//
// Compressed streams are handled by the compression subpackage.
package archive
