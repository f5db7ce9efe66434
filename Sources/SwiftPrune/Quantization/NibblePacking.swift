/// Two 4-bit values per byte, low nibble first (the GPTQ / llama.cpp
/// convention); an odd count leaves the last high nibble zero. Values of 2 or
/// 3 bits are stored in 4. Symmetric (signed) values are stored as their
/// 4-bit two's complement.
public enum NibblePacking {
    /// The number of bytes `count` packed values take.
    public static func packedCount(_ count: Int) -> Int { count / 2 + count % 2 }

    /// Packs the low 4 bits of every byte of `values` into `out`.
    /// - Throws: ``SwiftPruneError`` if `out` does not hold `packedCount(values.count)` bytes.
    public static func pack(_ values: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>) throws {
        guard out.count == packedCount(values.count) else {
            throw SwiftPruneError.value("packed buffer has \(out.count) bytes, \(packedCount(values.count)) needed")
        }
        let pairs = values.count / 2
        guard values.count > 0 else { return }
        let src = values.baseAddress!, dst = out.baseAddress!
        let workers = Threading.workerCount(for: pairs, minimumPerWorker: 1 << 17)
        parallelFor(workers: workers) { worker in
            for j in partitionRange(pairs, parts: workers, index: worker) {
                dst[j] = (src[2 &* j] & 0x0F) | (src[2 &* j &+ 1] << 4)
            }
        }
        if values.count % 2 == 1 { dst[pairs] = src[values.count - 1] & 0x0F }
    }

    /// Unpacks `out.count` values from `packed`; `signed` sign-extends each
    /// nibble (symmetric values), else it is zero-extended.
    /// - Throws: ``SwiftPruneError`` if `packed` does not hold `packedCount(out.count)` bytes.
    public static func unpack(_ packed: UnsafeBufferPointer<UInt8>, signed: Bool, into out: UnsafeMutableBufferPointer<UInt8>) throws {
        guard packed.count == packedCount(out.count) else {
            throw SwiftPruneError.value("packed buffer has \(packed.count) bytes, \(packedCount(out.count)) needed")
        }
        guard out.count > 0 else { return }
        let src = packed.baseAddress!, dst = out.baseAddress!
        let count = out.count
        for i in 0 ..< count {
            let byte = src[i >> 1]
            let nibble = (i & 1 == 0 ? byte << 4 : byte & 0xF0)
            dst[i] = signed ? UInt8(bitPattern: Int8(bitPattern: nibble) >> 4) : nibble >> 4
        }
    }
}
