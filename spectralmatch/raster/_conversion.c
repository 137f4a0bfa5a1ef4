/* Corrected values converted to an 8- or 16-bit integer output, in one pass.

   The numpy code of convert.py (the fallback where this module is not built) takes a
   window through a pass per operation: a per-band gain and offset (in float32), the
   count of valid values outside the output's range, NaN to 0, rounding half to even,
   clipping to the range less a nodata value at either end, a valid value that became
   the nodata value moved to the next one up, and the nodata value where invalid. This
   does the same to each value in one pass, reading the pixels as they were read (8- or
   16-bit integers) or as float32, with the same float32 arithmetic and no fused
   multiply-add (setup.py), so both give the same bits. It clips before it rounds,
   which gives what rounding first gives: the limits are whole numbers. */

#include "../_compiled.h"

/* Added and taken away, it rounds a float32 of magnitude under 2**22 to a whole number,
   half to even (the default rounding of IEEE arithmetic). */
#define ROUNDER 12582912.0f /* 1.5 * 2**23 */

/* The conversion of one band, as convert.py sets it. */
typedef struct {
    float gain, offset;            /* values * gain + offset */
    float count_low, count_high;   /* a valid value outside them was clipped */
    float low, high;               /* the whole-number range it is clipped to */
    int clash;                     /* whether a valid value may become `nodata` */
    int32_t nodata, fill;          /* `fill` where invalid */
} Conversion;

/* For rows x cols values (row stride `pitch` bytes) and their validity (bytes of 0 or
   1, row stride `valid_pitch`): the converted values into `out` (contiguous); returns
   how many valid values were clipped. */
#define CONVERT(NAME, TIN, TOUT)                                                         \
    VECTOR_CLONES static uint64_t NAME(const char *in, Py_ssize_t pitch, const char *valid, \
                                       Py_ssize_t valid_pitch, Py_ssize_t rows,            \
                                       Py_ssize_t cols, char *out_data, const Conversion *c) \
    {                                                                                   \
        const float gain = c->gain, offset = c->offset, low = c->low, high = c->high;    \
        const float count_low = c->count_low, count_high = c->count_high;                \
        const TOUT nodata = (TOUT)c->nodata, up = (TOUT)(c->nodata + 1);                 \
        const TOUT fill = (TOUT)c->fill;                                                 \
        const int clash = c->clash;                                                      \
        uint64_t clipped = 0;                                                            \
        for (Py_ssize_t y = 0; y < rows; y++) {                                          \
            const TIN *row = (const TIN *)(in + y * pitch);                              \
            const uint8_t *kept = (const uint8_t *)(valid + y * valid_pitch);            \
            TOUT *out = (TOUT *)out_data + y * cols;                                     \
            uint32_t outside = 0;                                                        \
            for (Py_ssize_t x = 0; x < cols; x++) {                                      \
                float v = (float)row[x] * gain;                                          \
                v = v + offset;                                                          \
                uint32_t k = kept[x];                                                    \
                outside += k & !((v >= count_low) & (v <= count_high));                  \
                v = v == v ? v : 0.0f;                                                   \
                v = v < low ? low : v;                                                   \
                v = v > high ? high : v;                                                 \
                v = (v + ROUNDER) - ROUNDER;                                             \
                TOUT r = (TOUT)(int32_t)v;                                               \
                r = ((r == nodata) & clash) ? up : r;                                    \
                out[x] = k ? r : fill;                                                   \
            }                                                                            \
            clipped += outside;                                                          \
        }                                                                                \
        return clipped;                                                                  \
    }

#define CONVERT_FROM(TIN, SUFFIX)                                                        \
    CONVERT(convert_##SUFFIX##_u8, TIN, uint8_t)                                         \
    CONVERT(convert_##SUFFIX##_i8, TIN, int8_t)                                          \
    CONVERT(convert_##SUFFIX##_u16, TIN, uint16_t)                                       \
    CONVERT(convert_##SUFFIX##_i16, TIN, int16_t)

CONVERT_FROM(uint8_t, u8)
CONVERT_FROM(int8_t, i8)
CONVERT_FROM(uint16_t, u16)
CONVERT_FROM(int16_t, i16)
CONVERT_FROM(float, f32)

typedef uint64_t (*Converter)(const char *, Py_ssize_t, const char *, Py_ssize_t, Py_ssize_t,
                              Py_ssize_t, char *, const Conversion *);

/* By the values' type (the order of SOURCES) and the output's (of TARGETS). */
static const Converter CONVERTERS[5][4] = {
    {convert_u8_u8, convert_u8_i8, convert_u8_u16, convert_u8_i16},
    {convert_i8_u8, convert_i8_i8, convert_i8_u16, convert_i8_i16},
    {convert_u16_u8, convert_u16_i8, convert_u16_u16, convert_u16_i16},
    {convert_i16_u8, convert_i16_i8, convert_i16_u16, convert_i16_i16},
    {convert_f32_u8, convert_f32_i8, convert_f32_u16, convert_f32_i16}};
static const char SOURCES[] = "BbHhf", TARGETS[] = "BbHh";
static const Py_ssize_t SOURCE_SIZES[] = {1, 1, 2, 2, 4}, TARGET_SIZES[] = {1, 1, 2, 2};
static const double TARGET_LOW[] = {0, INT8_MIN, 0, INT16_MIN};
static const double TARGET_HIGH[] = {UINT8_MAX, INT8_MAX, UINT16_MAX, INT16_MAX};

/* Position of a buffer's item type in `kinds` (items of `sizes` bytes), or -1. */
static int kind_of(const Py_buffer *view, const char *kinds, const Py_ssize_t *sizes)
{
    char format = item_format(view);
    const char *found = format ? strchr(kinds, format) : NULL;
    if (!found)
        return -1;
    int kind = (int)(found - kinds);
    return view->itemsize == sizes[kind] ? kind : -1;
}

static int same_shape(const Py_buffer *a, const Py_buffer *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, a->ndim * sizeof(Py_ssize_t)) == 0;
}

static int whole_in(double value, int target)
{
    /* in range first: a NaN is not, and is never cast */
    return value >= TARGET_LOW[target] && value <= TARGET_HIGH[target]
           && value == (double)(int64_t)value;
}

/* views: values, valid, gains, offsets, out. The conversions' settings from `numbers`
   (count_low, count_high, low, high; clash, fill), checked; -1 with an exception. */
static int check(Py_buffer *views, int source, int target, PyObject *const *numbers,
                 Conversion *conversion)
{
    Py_buffer *values = &views[0], *valid = &views[1], *out = &views[4];
    if (source < 0)
        return fail("values must be 8- or 16-bit integers or float32");
    if (target < 0)
        return fail("out must be 8- or 16-bit integers");
    if (values->ndim != 3 || values->strides[2] != values->itemsize)
        return fail("values must be (bands, rows, cols), contiguous along a row");
    if (!has_format(valid, "?", 1) || !same_shape(valid, values) || valid->strides[2] != 1)
        return fail("valid must be booleans shaped like values, contiguous along a row");
    if (!same_shape(out, values) || !PyBuffer_IsContiguous(out, 'C'))
        return fail("out must be contiguous and shaped like values");
    if ((views[2].obj == NULL) != (views[3].obj == NULL))
        return fail("gains and offsets go together");
    for (int i = 2; i < 4; i++)
        if (views[i].obj && (views[i].ndim != 1 || !has_format(&views[i], "f", 4)
                             || !PyBuffer_IsContiguous(&views[i], 'C')
                             || views[i].shape[0] != values->shape[0]))
            return fail("gains and offsets must be float32, one per band");
    double limits[4];
    for (int i = 0; i < 4; i++) {
        limits[i] = PyFloat_AsDouble(numbers[i]);
        if (limits[i] == -1.0 && PyErr_Occurred())
            return -1;
    }
    if (!whole_in(limits[2], target) || !whole_in(limits[3], target) || limits[2] > limits[3])
        return fail("low and high must be whole numbers in the output's range, low <= high");
    double fill = PyFloat_AsDouble(numbers[5]);
    if (fill == -1.0 && PyErr_Occurred())
        return -1;
    if (!whole_in(fill, target))
        return fail("fill must be a whole number in the output's range");
    double clash = numbers[4] == Py_None ? 0 : PyFloat_AsDouble(numbers[4]);
    if (clash == -1.0 && PyErr_Occurred())
        return -1;
    if (numbers[4] != Py_None && !(whole_in(clash, target) && limits[2] < clash && clash < limits[3]))
        return fail("the nodata value a valid value may become must lie inside (low, high)");
    *conversion = (Conversion){1.0f, 0.0f, (float)limits[0], (float)limits[1], (float)limits[2],
                               (float)limits[3], numbers[4] != Py_None, (int32_t)clash,
                               (int32_t)fill};
    return 0;
}

static PyObject *convert(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "convert(values, valid, gains, offsets, out, count_low, count_high, "
                        "low, high, clash, fill)");
        return NULL;
    }
    Py_buffer views[5] = {{0}, {0}, {0}, {0}, {0}};
    for (int i = 0; i < 5; i++) {
        if ((i == 2 || i == 3) && args[i] == Py_None)
            continue;
        if (PyObject_GetBuffer(args[i], &views[i], i == 4 ? PyBUF_RECORDS : PyBUF_RECORDS_RO) < 0) {
            release(views, i);
            return NULL;
        }
    }
    int source = kind_of(&views[0], SOURCES, SOURCE_SIZES);
    int target = kind_of(&views[4], TARGETS, TARGET_SIZES);
    Conversion conversion;
    if (check(views, source, target, args + 5, &conversion) < 0) {
        release(views, 5);
        return NULL;
    }
    Py_buffer *values = &views[0], *valid = &views[1], *out = &views[4];
    Converter converter = CONVERTERS[source][target];
    Py_ssize_t rows = values->shape[1], cols = values->shape[2];
    uint64_t clipped = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t band = 0; band < values->shape[0]; band++) {
        Conversion this_band = conversion;
        if (views[2].obj) {
            this_band.gain = ((const float *)views[2].buf)[band];
            this_band.offset = ((const float *)views[3].buf)[band];
        }
        clipped += converter((const char *)values->buf + band * values->strides[0],
                             values->strides[1],
                             (const char *)valid->buf + band * valid->strides[0],
                             valid->strides[1], rows, cols,
                             (char *)out->buf + band * rows * cols * out->itemsize, &this_band);
    }
    Py_END_ALLOW_THREADS
    release(views, 5);
    return PyLong_FromUnsignedLongLong(clipped);
}

static PyMethodDef methods[] = {
    {"convert", (PyCFunction)(void (*)(void))convert, METH_FASTCALL,
     "convert(values, valid, gains, offsets, out, count_low, count_high, low, high, clash, "
     "fill) -> clipped\n\n"
     "Convert a (bands, rows, cols) window of 8- or 16-bit integers or float32 into out\n"
     "(8- or 16-bit integers, contiguous): values * gains + offsets per band (float32;\n"
     "gains and offsets may both be None), NaN to 0, clipped to [low, high], rounded half\n"
     "to even; a valid value that became clash (None: none may) becomes clash + 1; fill\n"
     "where not valid. Returns how many valid values lay outside [count_low, count_high]\n"
     "(or were NaN)."},
    {NULL, NULL, 0, NULL}};

COMPILED_MODULE(_conversion,
                "Corrected values converted to 8- or 16-bit integers in one pass (the numpy "
                "code of convert.py is the fallback).",
                methods)
