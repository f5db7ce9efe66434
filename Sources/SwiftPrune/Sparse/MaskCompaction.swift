/// The entries of a tensor where a mask is set, in order (NumPy's
/// `values[mask]`): how sparse storage layouts keep only the non-zeros.
/// Branch-free (every entry is written, the output index advances by its
/// flag), so its speed does not depend on the mask's pattern.
public enum MaskCompaction {
    /// Copies the elements of `values` (opaque, `elementBytes` = 1, 2, 4 or 8
    /// bytes each) whose `keep` flag is non-zero into `kept`, in order.
    /// - Throws: ``SwiftPruneError`` for a bad element size, buffers of the
    ///   wrong size, or a number of set flags other than `kept`'s room.
    public static func compact(
        _ values: UnsafeRawBufferPointer, elementBytes: Int, keep: UnsafeBufferPointer<UInt8>,
        into kept: UnsafeMutableRawBufferPointer
    ) throws {
        guard [1, 2, 4, 8].contains(elementBytes) else {
            throw SwiftPruneError.value("element size must be 1, 2, 4 or 8 bytes, got \(elementBytes)")
        }
        guard values.count == keep.count * elementBytes, kept.count % elementBytes == 0 else {
            throw SwiftPruneError.value("\(values.count) value bytes do not match \(keep.count) flags of \(elementBytes) bytes")
        }
        switch elementBytes {
        case 1: try compact(values.bindMemory(to: UInt8.self), keep, kept.bindMemory(to: UInt8.self))
        case 2: try compact(values.bindMemory(to: UInt16.self), keep, kept.bindMemory(to: UInt16.self))
        case 4: try compact(values.bindMemory(to: UInt32.self), keep, kept.bindMemory(to: UInt32.self))
        default: try compact(values.bindMemory(to: UInt64.self), keep, kept.bindMemory(to: UInt64.self))
        }
    }

    private static func compact<T>(
        _ values: UnsafeBufferPointer<T>, _ keep: UnsafeBufferPointer<UInt8>, _ kept: UnsafeMutableBufferPointer<T>
    ) throws {
        let count = values.count, room = kept.count
        var set = 0
        for i in 0 ..< count where keep[i] != 0 { set &+= 1 }
        guard set == room else {
            throw SwiftPruneError.value("the mask keeps \(set) entries, the output has room for \(room)")
        }
        guard room > 0 else { return }
        let v = values.baseAddress!, k = keep.baseAddress!, out = kept.baseAddress!
        // Branch-free: write every entry at the next free slot, advance only
        // past kept ones. The last write may fall one past the end, so the
        // final entries are done with a branch.
        var j = 0, i = 0
        while i < count && j < room - 1 {
            out[j] = v[i]
            j &+= k[i] != 0 ? 1 : 0
            i &+= 1
        }
        while i < count {
            if k[i] != 0 {
                out[j] = v[i]
                j &+= 1
            }
            i &+= 1
        }
    }
}
