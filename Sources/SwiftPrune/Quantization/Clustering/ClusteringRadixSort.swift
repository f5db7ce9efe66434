/// Sorts finite `Float`s ascending in O(n): an LSD radix sort of the
/// order-preserving integer keys (sign flipped, negatives inverted), three
/// passes of 11 bits.
enum ClusteringRadixSort {
    @inline(__always)
    static func key(_ x: Float) -> UInt32 {
        let b = x.bitPattern
        return b & 0x8000_0000 != 0 ? ~b : b | 0x8000_0000
    }

    @inline(__always)
    static func value(_ k: UInt32) -> Float {
        Float(bitPattern: k & 0x8000_0000 != 0 ? k & 0x7FFF_FFFF : ~k)
    }

    /// The values of `x` in ascending order.
    static func sorted(_ x: UnsafeBufferPointer<Float>) throws -> [Float] {
        let n = x.count
        guard n > 1 else { return Array(x) }
        try FallibleAllocation.probe(UInt32.self, count: n, "the sorted values")
        var keys = [UInt32](unsafeUninitializedCapacity: n) { out, count in
            for i in 0 ..< n { out[i] = key(x[i]) }
            count = n
        }
        var scratch = try [UInt32](fallibleRepeating: 0, count: n)
        let radix = 1 << 11
        var counts = [Int](repeating: 0, count: radix * 3)
        keys.withUnsafeBufferPointer { k in
            counts.withUnsafeMutableBufferPointer { c in
                for i in 0 ..< n {
                    let v = k[i]
                    c[Int(v & 0x7FF)] &+= 1
                    c[radix + Int((v >> 11) & 0x7FF)] &+= 1
                    c[2 * radix + Int(v >> 22)] &+= 1
                }
            }
        }
        for pass in 0 ..< 3 {
            let shift = UInt32(11 * pass)
            // Skip a pass whose digit is the same for every key.
            let base = pass * radix
            if counts[base ..< base + radix].contains(n) { continue }
            var offset = 0
            for d in 0 ..< radix {
                let c = counts[base + d]
                counts[base + d] = offset
                offset += c
            }
            keys.withUnsafeBufferPointer { src in
                scratch.withUnsafeMutableBufferPointer { dst in
                    counts.withUnsafeMutableBufferPointer { c in
                        for i in 0 ..< n {
                            let v = src[i]
                            let d = base + Int((v >> shift) & 0x7FF)
                            dst[c[d]] = v
                            c[d] &+= 1
                        }
                    }
                }
            }
            swap(&keys, &scratch)
        }
        return keys.map(value)
    }
}
