/// Integers of 1 to 8 bits as a little-endian bit stream: value `i` occupies
/// bits `[i * bits, (i + 1) * bits)`, bit 0 being the lowest bit of byte 0.
/// For 4 bits this is "two per byte, low nibble first" (the GPTQ / llama.cpp convention).
/// `count` values take `ceil(count * bits / 8)` bytes; unused high bits of
/// the last byte are zero. Signed values are stored as their `bits`-bit two's
/// complement and sign-extended when unpacked.
///
/// Eight values of `bits` bits fill exactly `bits` bytes, so the work is done
/// in independent groups of eight (combined in one `UInt64`), split over threads.
public enum BitPacking {
    /// The number of bytes `count` values of `bits` bits take.
    public static func packedCount(_ count: Int, bits: Int) -> Int { (count * bits + 7) / 8 }

    private static func checkBits(_ bits: Int) throws {
        guard (1 ... 8).contains(bits) else { throw SwiftPruneError.value("bits must be in 1...8, got \(bits)") }
    }

    /// Packs the low `bits` bits of every byte of `values` into `out`.
    /// - Throws: ``SwiftPruneError`` for `bits` outside 1...8 or an `out` not
    ///   holding `packedCount(values.count, bits:)` bytes.
    public static func pack(_ values: UnsafeBufferPointer<UInt8>, bits: Int, into out: UnsafeMutableBufferPointer<UInt8>) throws {
        try checkBits(bits)
        let need = packedCount(values.count, bits: bits)
        guard out.count == need else { throw SwiftPruneError.value("packed buffer has \(out.count) bytes, \(need) needed") }
        guard values.count > 0 else { return }
        let src = values.baseAddress!, dst = out.baseAddress!
        let count = values.count
        let fullGroups = count / 8
        let mask = UInt64((1 << bits) - 1)
        let workers = Threading.workerCount(for: fullGroups, minimumPerWorker: 1 << 15)
        parallelFor(workers: workers) { worker in
            for g in partitionRange(fullGroups, parts: workers, index: worker) {
                var word: UInt64 = 0
                let base = src + 8 &* g
                for k in 0 ..< 8 { word |= (UInt64(base[k]) & mask) << UInt64(k &* bits) }
                let target = dst + g &* bits
                for b in 0 ..< bits { target[b] = UInt8(truncatingIfNeeded: word >> UInt64(8 &* b)) }
            }
        }
        let rest = count - 8 * fullGroups
        if rest > 0 {
            var word: UInt64 = 0
            for k in 0 ..< rest { word |= (UInt64(src[8 * fullGroups + k]) & mask) << UInt64(k * bits) }
            for b in 0 ..< need - fullGroups * bits { dst[fullGroups * bits + b] = UInt8(truncatingIfNeeded: word >> UInt64(8 * b)) }
        }
    }

    /// Unpacks `out.count` values of `bits` bits from `packed`; `signed`
    /// sign-extends each (int8 bit patterns), else they are zero-extended.
    /// - Throws: ``SwiftPruneError`` for `bits` outside 1...8 or a `packed`
    ///   not holding `packedCount(out.count, bits:)` bytes.
    public static func unpack(_ packed: UnsafeBufferPointer<UInt8>, bits: Int, signed: Bool,
                              into out: UnsafeMutableBufferPointer<UInt8>) throws {
        try checkBits(bits)
        let need = packedCount(out.count, bits: bits)
        guard packed.count == need else { throw SwiftPruneError.value("packed buffer has \(packed.count) bytes, \(need) needed") }
        guard out.count > 0 else { return }
        let src = packed.baseAddress!, dst = out.baseAddress!
        let count = out.count
        let fullGroups = count / 8
        let mask = UInt64((1 << bits) - 1)
        let extend = UInt64(64 - bits)
        @inline(__always) func value(_ word: UInt64, _ k: Int) -> UInt8 {
            if signed {
                return UInt8(truncatingIfNeeded: Int64(bitPattern: (word >> UInt64(k &* bits)) << extend) >> Int64(extend))
            }
            return UInt8(truncatingIfNeeded: (word >> UInt64(k &* bits)) & mask)
        }
        let workers = Threading.workerCount(for: fullGroups, minimumPerWorker: 1 << 15)
        parallelFor(workers: workers) { worker in
            for g in partitionRange(fullGroups, parts: workers, index: worker) {
                var word: UInt64 = 0
                let source = src + g &* bits
                for b in 0 ..< bits { word |= UInt64(source[b]) << UInt64(8 &* b) }
                let target = dst + 8 &* g
                for k in 0 ..< 8 { target[k] = value(word, k) }
            }
        }
        let rest = count - 8 * fullGroups
        if rest > 0 {
            var word: UInt64 = 0
            for b in 0 ..< need - fullGroups * bits { word |= UInt64(src[fullGroups * bits + b]) << UInt64(8 * b) }
            for k in 0 ..< rest { dst[8 * fullGroups + k] = value(word, k) }
        }
    }
}
