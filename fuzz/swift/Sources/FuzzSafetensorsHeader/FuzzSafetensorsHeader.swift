import SafetensorsHeaderParser

/// libFuzzer entry point: parse the input as a whole safetensors file, and
/// as the prefix of a larger one. Any outcome but a value or a thrown
/// `SwiftPruneError` (a trap, an out-of-bounds access found by ASan, a hang)
/// is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensorsHeader(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    if let header = try? SafetensorsHeader.parse(file: bytes) {
        // Whatever is accepted must describe tensors inside the file.
        for entry in header.entries {
            precondition(header.dataStart + entry.dataRange.upperBound <= size, "accepted a tensor past the end")
        }
    }
    let first8 = UnsafeBufferPointer(rebasing: bytes[0 ..< min(8, size)])
    let needed = SafetensorsHeader.prefixLength(first8: first8, fileSize: size + 4096)
    _ = try? SafetensorsHeader.parse(prefix: UnsafeBufferPointer(rebasing: bytes[0 ..< min(needed, size)]),
                                     fileSize: size + 4096)
    return 0
}
