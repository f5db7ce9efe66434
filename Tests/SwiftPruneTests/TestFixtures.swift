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
