/// One tensor described by a safetensors header.
public struct SafetensorsEntry: Equatable, Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range inside the data section (which starts right after the header).
    public let dataRange: Range<Int>

    public init(name: String, dtype: SafetensorsDType, shape: [Int], dataRange: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataRange = dataRange
    }
}

/// The parsed and validated header of a safetensors file.
///
/// Layout: 8 bytes little-endian `N`, then `N` bytes of UTF-8 JSON (an object
/// mapping each tensor name to `{"dtype", "shape", "data_offsets"}`, plus an
/// optional `"__metadata__"` object of strings), then the data section.
public struct SafetensorsHeader: Equatable, Sendable {
    /// The largest header accepted (the limit of the reference implementation).
    public static let maximumHeaderLength = 100_000_000

    /// Tensors in header order.
    public let entries: [SafetensorsEntry]
    /// `__metadata__` pairs in header order.
    public let metadata: [(String, String)]
    /// Offset of the data section from the start of the file (`8 + N`).
    public let dataStart: Int

    public static func == (lhs: SafetensorsHeader, rhs: SafetensorsHeader) -> Bool {
        lhs.entries == rhs.entries && lhs.dataStart == rhs.dataStart
            && lhs.metadata.count == rhs.metadata.count
            && zip(lhs.metadata, rhs.metadata).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// Parses and validates the header of the safetensors file whose bytes are
    /// `file` (the whole file: the data section is needed to check offsets).
    ///
    /// Everything the reference implementation checks is checked, and every
    /// failure throws ``SwiftPruneError`` (`.invalidValue`): a file shorter than
    /// 8 bytes; a header length over ``maximumHeaderLength`` or past the end of
    /// the file; a header that is not a JSON object (or does not start with
    /// `{`); unknown, missing or mistyped fields; unknown dtypes; negative or
    /// non-integer dimensions and offsets; a byte count that does not match
    /// `dtype` and `shape`; offsets outside the data section; overlapping
    /// tensors; bytes of the data section that belong to no tensor.
    public static func parse(file: UnsafeBufferPointer<UInt8>) throws -> SafetensorsHeader {
        try parse(prefix: file, fileSize: file.count)
    }

    /// How many leading bytes of a file of `fileSize` bytes ``parse(prefix:fileSize:)``
    /// needs, given its first 8 bytes (fewer when the file is shorter): the
    /// length field plus the declared header, capped by the limit and the file.
    public static func prefixLength(first8: UnsafeBufferPointer<UInt8>, fileSize: Int) -> Int {
        guard first8.count >= 8 else { return min(fileSize, 8) }
        var length: UInt64 = 0
        for i in (0 ..< 8).reversed() { length = length << 8 | UInt64(first8[i]) }
        let declared = Int(min(length, UInt64(maximumHeaderLength)))
        return min(fileSize, 8 + declared)
    }

    /// Parses and validates a header from the first bytes of a file of
    /// `fileSize` bytes, so a reader need not map (or read) the data section:
    /// `prefix` holds at least ``prefixLength(first8:fileSize:)`` bytes.
    /// Same checks and errors as ``parse(file:)``.
    public static func parse(prefix file: UnsafeBufferPointer<UInt8>, fileSize: Int) throws -> SafetensorsHeader {
        guard fileSize >= 8, file.count >= 8 else {
            throw SwiftPruneError.value("not a safetensors file: \(fileSize) bytes is shorter than the 8-byte header length")
        }
        var length: UInt64 = 0
        for i in (0 ..< 8).reversed() { length = length << 8 | UInt64(file[i]) }
        guard length <= UInt64(maximumHeaderLength) else {
            throw SwiftPruneError.value("safetensors header length \(length) exceeds the limit of \(maximumHeaderLength) bytes")
        }
        let headerLength = Int(length)
        guard headerLength <= fileSize - 8 else {
            throw SwiftPruneError.value(
                "safetensors header length \(headerLength) runs past the end of the file (\(fileSize) bytes)")
        }
        guard file.count >= 8 + headerLength else {
            throw SwiftPruneError.value("safetensors header: only \(file.count - 8) of its \(headerLength) bytes could be read")
        }
        guard headerLength >= 2, file[8] == UInt8(ascii: "{") else {
            throw SwiftPruneError.value("safetensors header does not start with '{'")
        }
        let dataStart = 8 + headerLength
        let dataSize = fileSize - dataStart
        let json: JSONValue
        do {
            json = try JSONValue.parse(UnsafeBufferPointer(rebasing: file[8 ..< dataStart]))
        } catch let error as SwiftPruneError {
            throw SwiftPruneError.value("safetensors header: \(error.message)")
        }
        guard case .object(let members) = json else {
            throw SwiftPruneError.value("safetensors header is not a JSON object")
        }
        var entries: [SafetensorsEntry] = []
        var metadata: [(String, String)] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let items) = value else {
                    throw SwiftPruneError.value("safetensors header: __metadata__ is not an object")
                }
                for (key, item) in items {
                    guard case .string(let text) = item else {
                        throw SwiftPruneError.value("safetensors header: __metadata__[\"\(key)\"] is not a string")
                    }
                    metadata.append((key, text))
                }
            } else {
                entries.append(try entry(name: name, value, dataSize: dataSize))
            }
        }
        try checkCoverage(entries, dataSize: dataSize)
        return SafetensorsHeader(entries: entries, metadata: metadata, dataStart: dataStart)
    }

    private static func entry(name: String, _ value: JSONValue, dataSize: Int) throws -> SafetensorsEntry {
        func fail(_ message: String) -> SwiftPruneError {
            .value("safetensors header: tensor \"\(name)\": \(message)")
        }
        guard case .object(let fields) = value else { throw fail("is not an object") }
        var dtypeValue: JSONValue?, shapeValue: JSONValue?, offsetsValue: JSONValue?
        for (key, field) in fields {
            switch key {
            case "dtype": dtypeValue = field
            case "shape": shapeValue = field
            case "data_offsets": offsetsValue = field
            default: throw fail("unknown field \"\(key)\"")
            }
        }
        guard case .string(let dtypeName)? = dtypeValue else { throw fail("missing or non-string \"dtype\"") }
        let dtype: SafetensorsDType
        do { dtype = try SafetensorsDType.named(dtypeName) } catch let error as SwiftPruneError { throw fail(error.message) }
        guard case .array(let dims)? = shapeValue else { throw fail("missing or non-list \"shape\"") }
        var shape: [Int] = []
        for dim in dims {
            guard let d = dim.nonNegativeInteger else { throw fail("shape holds a value that is not a non-negative integer") }
            shape.append(d)
        }
        guard case .array(let offsets)? = offsetsValue, offsets.count == 2,
              let begin = offsets[0].nonNegativeInteger, let end = offsets[1].nonNegativeInteger else {
            throw fail("\"data_offsets\" must be a list of two non-negative integers")
        }
        guard begin <= end else { throw fail("data_offsets [\(begin), \(end)] are reversed") }
        guard end <= dataSize else {
            throw fail("data_offsets [\(begin), \(end)] lie outside the data section (\(dataSize) bytes)")
        }
        var bytes = dtype.size
        for d in shape {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("shape \(shape) is too large") }
            bytes = product
        }
        guard bytes == end - begin else {
            throw fail("shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        return SafetensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin ..< end)
    }

    /// Tensors must tile the data section exactly: no overlap, no gap.
    private static func checkCoverage(_ entries: [SafetensorsEntry], dataSize: Int) throws {
        let sorted = entries.sorted {
            ($0.dataRange.lowerBound, $0.dataRange.upperBound) < ($1.dataRange.lowerBound, $1.dataRange.upperBound)
        }
        var covered = 0
        for entry in sorted {
            if entry.dataRange.lowerBound < covered {
                throw SwiftPruneError.value(
                    "safetensors header: tensor \"\(entry.name)\" at bytes \(entry.dataRange) overlaps another tensor")
            }
            if entry.dataRange.lowerBound > covered {
                throw SwiftPruneError.value(
                    "safetensors header: data bytes \(covered)..<\(entry.dataRange.lowerBound) belong to no tensor")
            }
            covered = entry.dataRange.upperBound
        }
        guard covered == dataSize else {
            throw SwiftPruneError.value(
                "safetensors file has \(dataSize - covered) bytes after the last tensor (file truncated or padded?)")
        }
    }
}
