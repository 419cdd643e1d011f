# Part of ebb's Python worker, one script with worker.py: script.go joins
# worker.py, worker_tensors.py and worker_pool.py, in that order, into the
# file each worker runs, so the parts share their names (imports are
# worker.py's).


# ---------------------------------------------------------------- tensors


def pad8(n):
    return -n % 8


def decode_tensors(body, off):
    """Yields (name, datatype, shape, value) for each tensor of a payload."""
    (count,) = COUNT.unpack_from(body, off)
    off += COUNT.size
    for _ in range(count):
        nlen, dlen, rank, _, size = TENSOR.unpack_from(body, off)
        off += TENSOR.size
        shape = list(struct.unpack_from("<%dq" % rank, body, off))
        off += 8 * rank
        name = bytes(body[off:off + nlen]).decode("utf-8", "surrogateescape")
        off += nlen
        dt = bytes(body[off:off + dlen]).decode("ascii")
        off += dlen
        off += pad8(nlen + dlen)
        yield name, dt, shape, decode_data(body, off, size, dt, shape)
        off += size + pad8(size)


def elements(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def decode_data(body, off, size, dt, shape):
    n = elements(shape)
    if dt == "BYTES":
        flat = []
        end = off + size
        while off < end:
            (k,) = ELEMENT.unpack_from(body, off)
            off += ELEMENT.size
            flat.append(bytes(body[off:off + k]).decode("utf-8", "surrogateescape"))
            off += k
        if np is not None:
            a = np.empty(n, dtype=object)
            a[:] = flat
            return a.reshape(shape)
        return reshape(flat, shape)
    npdt, code, _ = TYPES[dt]
    if np is not None:
        a = np.frombuffer(body, dtype=npdt, count=n, offset=off)
        if dt == "BF16":
            a = (a.astype("<u4") << 16).view("<f4")
        return a.reshape(shape)
    flat = list(struct.unpack_from("<%d%s" % (n, code), body, off))
    if dt == "BF16":
        flat = [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in flat]
    return reshape(flat, shape)


def reshape(flat, shape):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0] if shape[0] else 0
    return [reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def convert(value, dt):
    """value (an input) as declared datatype dt: the server accepts any
    numeric datatype for a numeric input."""
    if np is not None:
        npdt = TYPES[dt][0]
        return value.astype("<f4" if dt == "BF16" else npdt)
    cast = float if dt.startswith(("FP", "BF")) else int
    return nested(value, cast)


def nested(v, f):
    if isinstance(v, list):
        return [nested(x, f) for x in v]
    return f(v)


def encode_output(value, declared, carried):
    """Returns (datatype, shape, data buffer) for one output."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()  # a torch tensor
    if np is not None:
        return encode_array(value, declared, carried)
    return encode_list(value, declared, carried)


def datatype_of(a):
    kind, size = a.dtype.kind, a.dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return "INT%d" % (size * 8)
    if kind == "u":
        return "UINT%d" % (size * 8)
    if kind == "f":
        return {2: "FP16", 4: "FP32"}.get(size, "FP64")
    if kind in "USO":
        return "BYTES"
    raise TypeError("numpy dtype %s has no OIP v2 datatype" % a.dtype)


def encode_array(value, declared, carried):
    a = np.asarray(value)
    if a.dtype.kind == "O":
        flat = a.ravel().tolist()
        if not all(isinstance(v, (str, bytes)) for v in flat):
            a = a.astype(np.float64)
    dt = datatype_of(a)
    if declared is not None and declared != dt:
        if declared == "BYTES":
            a = a.astype(object)
        dt = declared
    if dt == "BYTES":
        return dt, list(a.shape), bytes_data(a.ravel().tolist())
    while dt not in carried:
        if dt not in WIDER:
            raise TypeError("datatype %s is not served by this replica" % dt)
        if dt == "UINT64" and a.size and int(a.max()) > INT64_MAX:
            raise OverflowError("UINT64 values above %d cannot be sent as INT64, which this replica serves instead" % INT64_MAX)
        dt = WIDER[dt]
    if dt == "BF16":
        # Round to nearest even: bfloat16 is the top half of a float32.
        bits = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype("<u8")
        a = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")
    else:
        a = np.ascontiguousarray(a, dtype=TYPES[dt][0])
    return dt, list(a.shape), a.reshape(-1).view(np.uint8)


def bytes_data(flat):
    parts = []
    for v in flat:
        if isinstance(v, str):
            v = v.encode("utf-8", "surrogateescape")
        elif not isinstance(v, (bytes, bytearray)):
            v = str(v).encode("utf-8", "surrogateescape")
        parts.append(ELEMENT.pack(len(v)))
        parts.append(v)
    return b"".join(parts)


def encode_list(value, declared, carried):
    """encode_output without numpy: value is nested lists or a scalar."""
    shape, v = [], value
    while isinstance(v, (list, tuple)):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    flat = []
    flatten(value, flat)
    if elements(shape) != len(flat):
        raise ValueError("nested lists are ragged: every row must have the same length")
    if declared is not None:
        dt = declared
    elif all(isinstance(x, bool) for x in flat):
        dt = "BOOL"
    elif all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
        dt = "INT64"
    elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in flat):
        dt = "FP64"
    elif all(isinstance(x, (str, bytes)) for x in flat):
        dt = "BYTES"
    else:
        raise TypeError("values of type %s cannot be sent; return numbers, booleans or strings"
                        % ", ".join(sorted({type(x).__name__ for x in flat})))
    if dt == "BYTES":
        return dt, shape, bytes_data(flat)
    while dt not in carried:
        if dt not in WIDER:
            raise TypeError("datatype %s is not served by this replica" % dt)
        dt = WIDER[dt]
    code = TYPES[dt][1]
    if dt == "BF16":
        flat = [bfloat16_bits(float(x)) for x in flat]
    elif dt.startswith("FP"):
        flat = [float(x) for x in flat]
    elif dt == "BOOL":
        flat = [bool(x) for x in flat]
    else:
        flat = [int(x) for x in flat]
    return dt, shape, struct.pack("<%d%s" % (len(flat), code), *flat)


def bfloat16_bits(f):
    """The bfloat16 nearest to f (ties to even), as its 16 bits."""
    bits = struct.unpack("<I", struct.pack("<f", f))[0]
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16


def flatten(data, out, depth=0):
    if depth > 32:
        raise ValueError("data is nested too deeply")
    if isinstance(data, (list, tuple)):
        for v in data:
            flatten(v, out, depth + 1)
    else:
        out.append(data)


def tensor_buffers(name, dt, shape, data):
    """The buffers of one tensor in a payload; data is sent as is."""
    n = name.encode("utf-8", "surrogateescape")
    d = dt.encode("ascii")
    size = memoryview(data).nbytes
    head = b"".join((TENSOR.pack(len(n), len(d), len(shape), 0, size),
                     struct.pack("<%dq" % len(shape), *shape), n, d, bytes(pad8(len(n) + len(d)))))
    return [head, data, bytes(pad8(size))]
