/// A safetensors file opened for reading: memory-mapped, header validated.
///
/// ``tensorBytes(_:)`` returns a view into the mapping, valid as long as the
/// file object lives: no tensor is copied or read before it is used.
public final class SafetensorsFile: @unchecked Sendable {
    public let path: String
    public let header: SafetensorsHeader
    let mapping: MappedFile

    /// Opens, maps and validates the file at `path`.
    /// - Throws: ``SwiftPruneError`` if the file cannot be read or is not a
    ///   valid safetensors file (see ``SafetensorsHeader/parse(file:)``).
    public init(path: String) throws {
        self.path = path
        mapping = try MappedFile(path: path)
        do {
            header = try SafetensorsHeader.parse(file: mapping.bytes)
        } catch let error as SwiftPruneError {
            throw SwiftPruneError(error.kind, "\(path): \(error.message)", code: error.code)
        }
    }

    /// Tensors in header order.
    public var entries: [SafetensorsEntry] { header.entries }

    /// The raw little-endian bytes of entry `index`.
    public func tensorBytes(_ index: Int) throws -> UnsafeRawBufferPointer {
        guard index >= 0 && index < header.entries.count else {
            throw SwiftPruneError.value("tensor index \(index) is out of range (\(header.entries.count) tensors)")
        }
        let range = header.entries[index].dataRange
        guard let base = mapping.bytes.baseAddress, !range.isEmpty else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + header.dataStart + range.lowerBound, count: range.count)
    }

    /// Drops the pages of entry `index` from resident memory (see
    /// ``MappedFile/release(_:)``); the tensor stays readable.
    public func release(_ index: Int) throws {
        _ = try tensorBytes(index)
        let range = header.entries[index].dataRange
        mapping.release(header.dataStart + range.lowerBound ..< header.dataStart + range.upperBound)
    }
}
