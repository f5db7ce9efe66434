@testable import SwiftPrune
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Fixtures shared by several test files.

/// A new empty directory `/tmp/<prefix>-XXXXXX`; remove it with ``removeTemporaryDirectory(_:)``.
/// Returns nil when `mkdtemp` fails.
func makeTemporaryDirectory(prefix: String) -> String? {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { return nil }
    return String(cString: made)
}

/// Removes `directory` and the files in it (the tests make no subdirectories).
func removeTemporaryDirectory(_ directory: String) {
    if let dir = opendir(directory) {
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { unlink("\(directory)/\(name)") }
        }
        closedir(dir)
    }
    rmdir(directory)
}

/// Whether the file system of `directory` refuses a direct write at offset 256
/// (ext4 and XFS do: not a multiple of the logical block size; tmpfs accepts it).
func enforcesDirectAlignment(in directory: String) -> Bool {
    #if os(Linux) && (arch(x86_64) || arch(arm64))
    let path = "\(directory)/probe"
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT_FLAG, 0o600)
    guard fd >= 0 else { return false }
    defer { close(fd); unlink(path) }
    var buffer: UnsafeMutableRawPointer?
    guard posix_memalign(&buffer, 4096, 4096) == 0, let buffer else { return false }
    defer { free(buffer) }
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
    return pwrite(fd, buffer, 4096, 256) < 0 && errno == EINVAL
    #else
    return false
    #endif
}

/// `count` deterministic pseudo-random floats in [-1, 1) (xorshift64 from `seed`).
func pseudoRandomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    return (0 ..< count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Int64(state >> 40) - (1 << 23)) / Float(1 << 23)
    }
}

/// The reference product `W @ x` (`rows × columns` times `columns × batch`, row-major), summed in Double.
func referenceMatmul(_ w: [Float], rows: Int, columns: Int, _ x: [Float], batch: Int) -> [Float] {
    var y = [Float](repeating: 0, count: rows * batch)
    for i in 0 ..< rows {
        for b in 0 ..< batch {
            var sum = 0.0
            for k in 0 ..< columns { sum += Double(w[i * columns + k]) * Double(x[k * batch + b]) }
            y[i * batch + b] = Float(sum)
        }
    }
    return y
}
