import Synchronization

/// A small process-wide pool of 64-byte-aligned scratch buffers for the
/// packing buffers of GEMM and the work arrays of QR.
///
/// Kernels called in a loop (power iterations, blocked factorizations)
/// would otherwise map, fault in and zero fresh pages on every call: large
/// allocations bypass the malloc heap. At most `capacity` idle buffers are
/// kept; concurrent callers each get their own buffer.
enum ScratchPool {
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let bytes: Int
    }

    static let capacity = 6
    private static let idle = Mutex<[Buffer]>([])

    /// A buffer of at least `bytes` bytes; return it with ``recycle(_:)``.
    static func take(bytes: Int) -> Buffer {
        let needed = max(64, bytes)
        let reused: Buffer? = idle.withLock { list in
            guard let index = list.indices.filter({ list[$0].bytes >= needed })
                .min(by: { list[$0].bytes < list[$1].bytes }) else { return nil }
            return list.remove(at: index)
        }
        if let reused { return reused }
        return Buffer(pointer: UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 64), bytes: needed)
    }

    /// Gives `buffer` back to the pool (or frees it when the pool is full).
    static func recycle(_ buffer: Buffer) {
        let evicted: Buffer? = idle.withLock { list in
            list.append(buffer)
            guard list.count > capacity,
                  let smallest = list.indices.min(by: { list[$0].bytes < list[$1].bytes }) else { return nil }
            return list.remove(at: smallest)
        }
        evicted?.pointer.deallocate()
    }

    /// Runs `body` with `count` scratch elements of `T`.
    @inline(__always)
    static func with<T, R>(_: T.Type, count: Int, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        let buffer = take(bytes: max(1, count) * MemoryLayout<T>.stride)
        defer { recycle(buffer) }
        return try body(buffer.pointer.bindMemory(to: T.self, capacity: max(1, count)))
    }
}
