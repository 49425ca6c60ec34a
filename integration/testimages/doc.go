// Package testimages builds small, deterministic OCI images for berth's tests
// without any network access.
//
// Everything is built in memory from the host's static busybox
// (/usr/bin/busybox from Debian's busybox-static) and fixed metadata: every
// tar entry has the mtime [Epoch], uid/gid 0 unless set, and entries sorted by
// name, so the same call yields byte-identical blobs and digests on every run.
//
// The pieces, from the bottom up:
//
//   - [Entry] constructors ([File], [Dir], [Symlink], [Hardlink], [CharDev],
//     [Whiteout], [Opaque], [Raw]) and [NewLayer] / [RawLayer], which turn
//     entries into an uncompressed layer tarball with its diff ID.
//   - [BuildImage] (layers + config + history + platform + annotations, with a
//     [Compression]) and [BuildIndex] (multi-platform), both returning an
//     [Image]: a root descriptor plus every blob it references.
//   - Ready-made images: [Busybox], [MultiLayer], [MultiPlatform],
//     [SymlinkData], and hostile layers from [EvilLayers] (checked with
//     [PrepareOutside] and [CheckOutside]).
//   - [BusyboxExpected] and [MultiLayerExpected]: the root filesystems an
//     unpack must produce, checked against a directory by [Expectation.Check].
//   - [Image.Walk] (every blob, children first: the order of a registry
//     push), [Image.Resolve] and [Image.LayerTars].
//   - Writers: [WriteOCILayout], [WriteOCIArchive] and [WriteDockerArchive],
//     and [Validate] / [ValidateArchive] to check any OCI layout or archive
//     (berth's own exports included) for structural validity.
//   - [GenerateBench]: large, realistic, streamed benchmark images (used by
//     bench/genimage).
package testimages
