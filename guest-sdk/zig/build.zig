//! The Zig package of the dohost guest SDK: one module, "dohost" (dohost.zig).
//!
//! In your build.zig.zon (a tarball of this directory, or this directory itself):
//!
//!     .dependencies = .{
//!         .dohost = .{ .url = "file:///path/to/dohost-zig-0.1.0.tar.gz", .hash = "..." },
//!         // or: .dohost = .{ .path = "/path/to/guest-sdk/zig" },
//!     },
//!
//! and in your build.zig (guest-sdk/zig/README.md has the whole file):
//!
//!     const dohost = b.dependency("dohost", .{}).module("dohost");
//!     // ... .imports = &.{.{ .name = "dohost", .module = dohost }} ...
const std = @import("std");

pub fn build(b: *std.Build) void {
    _ = b.addModule("dohost", .{ .root_source_file = b.path("dohost.zig") });
}
