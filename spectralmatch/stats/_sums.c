/* Exact sums of small integers for spectralmatch.stats.moments, in one pass each.

   The numpy code in moments.py computes the same sums (and remains the fallback where
   this module is not built): a count, a sum and a sum of squares per band and block,
   and per band over a whole window, of 8- and 16-bit integers where they are valid.
   Integer sums are exact whatever their order, so both give the same numbers to the
   bit; numpy needs a pass per operation and a cast before each wide sum, this one pass.

   Arrays come through the buffer protocol (no numpy headers to build against); the GIL
   is released while summing. */

#include "../_compiled.h"

/* ------------------------------------------------------------------ block sums */

/* The largest block summed (EXACT_BLOCK_PIXELS of moments.py): a column's sum over a
   block's rows fits 32 bits, and every sum is exact in a double. */
#define MAX_BLOCK_PIXELS 4096

/* For one band: rows x cols values (row stride `pitch` bytes, contiguous along a row),
   their validity (NULL: all valid; else bytes of 0 or 1, row stride `valid_pitch`),
   blocks starting at rows `row_starts` (n_rows of them) and columns `col_starts`
   (n_cols): each block's count, sum and sum of squares, in row-major order. A block
   holds at most 2**12 pixels (EXACT_BLOCK_PIXELS), so a column's sum over a block's
   rows fits 32 bits. `column_*`: scratch of `cols` entries each. */
#define BLOCK_SUMS(NAME, T, SUM_T)                                                       \
    VECTOR_CLONES static void NAME(const char *values, Py_ssize_t pitch, const char *valid,           \
                     Py_ssize_t valid_pitch, Py_ssize_t rows, Py_ssize_t cols,          \
                     const int64_t *row_starts, Py_ssize_t n_rows,                      \
                     const int64_t *col_starts, Py_ssize_t n_cols, double *count,       \
                     double *total, double *squares, SUM_T *column_sum,                 \
                     uint64_t *column_squares, uint32_t *column_count)                  \
    {                                                                                   \
        for (Py_ssize_t r = 0; r < n_rows; r++) {                                       \
            Py_ssize_t top = row_starts[r];                                             \
            Py_ssize_t bottom = r + 1 < n_rows ? row_starts[r + 1] : rows;              \
            memset(column_sum, 0, cols * sizeof(SUM_T));                                \
            memset(column_squares, 0, cols * sizeof(uint64_t));                         \
            memset(column_count, 0, cols * sizeof(uint32_t));                           \
            for (Py_ssize_t y = top; y < bottom; y++) {                                 \
                const T *row = (const T *)(values + y * pitch);                         \
                if (valid) {                                                            \
                    const uint8_t *kept = (const uint8_t *)(valid + y * valid_pitch);   \
                    for (Py_ssize_t x = 0; x < cols; x++) {                             \
                        SUM_T value = (SUM_T)row[x] * (SUM_T)kept[x];                   \
                        column_sum[x] += value;                                         \
                        column_squares[x] += (uint32_t)(value * value);                 \
                        column_count[x] += kept[x];                                     \
                    }                                                                   \
                } else {                                                                \
                    for (Py_ssize_t x = 0; x < cols; x++) {                             \
                        SUM_T value = (SUM_T)row[x];                                    \
                        column_sum[x] += value;                                         \
                        column_squares[x] += (uint32_t)(value * value);                 \
                    }                                                                   \
                }                                                                       \
            }                                                                           \
            for (Py_ssize_t c = 0; c < n_cols; c++) {                                   \
                Py_ssize_t left = col_starts[c];                                        \
                Py_ssize_t right = c + 1 < n_cols ? col_starts[c + 1] : cols;           \
                int64_t sum = 0;                                                        \
                uint64_t sum_of_squares = 0, counted = 0;                               \
                for (Py_ssize_t x = left; x < right; x++) {                             \
                    sum += column_sum[x];                                               \
                    sum_of_squares += column_squares[x];                                \
                    counted += column_count[x];                                         \
                }                                                                       \
                Py_ssize_t k = r * n_cols + c;                                          \
                count[k] = valid ? (double)counted : (double)((bottom - top) * (right - left)); \
                total[k] = (double)sum;                                                 \
                squares[k] = (double)sum_of_squares;                                    \
            }                                                                           \
        }                                                                               \
    }

BLOCK_SUMS(block_sums_u8, uint8_t, uint32_t)
BLOCK_SUMS(block_sums_i8, int8_t, int32_t)
BLOCK_SUMS(block_sums_u16, uint16_t, uint32_t)
BLOCK_SUMS(block_sums_i16, int16_t, int32_t)

/* ------------------------------------------------------------------ band sums */

/* Over n values (contiguous) where valid (NULL: all): count, sum, sum of squares, and
   the extremes (HIGHEST and LOWEST of the type where none is valid). Fewer than 2**32
   values, so the sum of squares fits 64 bits. By runs of BAND_RUN values: a run all
   valid (most are: nodata lies in large areas) is summed without looking at the
   validity, in a loop without branches that the compiler vectorizes. */
#define BAND_RUN 1024
#define BAND_SUMS(NAME, T, SUM_T, LOWEST, HIGHEST)                                       \
    VECTOR_CLONES static void NAME(const char *data, const char *valid_data, Py_ssize_t n,            \
                     uint64_t *count, int64_t *total, uint64_t *squares, int64_t *low,  \
                     int64_t *high)                                                     \
    {                                                                                   \
        const T *values = (const T *)data;                                              \
        const uint8_t *valid = (const uint8_t *)valid_data;                             \
        uint64_t counted = 0, sum_of_squares = 0;                                       \
        int64_t sum = 0;                                                                \
        T smallest = HIGHEST, largest = LOWEST;                                         \
        for (Py_ssize_t start = 0; start < n; start += BAND_RUN) {                      \
            Py_ssize_t end = start + BAND_RUN < n ? start + BAND_RUN : n;               \
            uint32_t kept = (uint32_t)(end - start);                                    \
            if (valid) {                                                                \
                kept = 0;                                                               \
                for (Py_ssize_t x = start; x < end; x++)                                \
                    kept += valid[x];                                                   \
            }                                                                           \
            counted += kept;                                                            \
            if (!kept)                                                                  \
                continue;                                                               \
            /* a loop-invariant test: the compiler makes the loop without it apart */   \
            int partly = kept != (uint32_t)(end - start);                               \
            for (Py_ssize_t x = start; x < end; x++) {                                  \
                if (partly && !valid[x])                                                \
                    continue;                                                           \
                T value = values[x];                                                    \
                sum += value;                                                           \
                sum_of_squares += (uint32_t)((SUM_T)value * (SUM_T)value);              \
                smallest = value < smallest ? value : smallest;                         \
                largest = value > largest ? value : largest;                            \
            }                                                                           \
        }                                                                               \
        *count = counted;                                                               \
        *total = sum;                                                                   \
        *squares = sum_of_squares;                                                      \
        *low = smallest;                                                                \
        *high = largest;                                                                \
    }

BAND_SUMS(band_sums_u8, uint8_t, uint32_t, 0, UINT8_MAX)
BAND_SUMS(band_sums_i8, int8_t, int32_t, INT8_MIN, INT8_MAX)
BAND_SUMS(band_sums_u16, uint16_t, uint32_t, 0, UINT16_MAX)
BAND_SUMS(band_sums_i16, int16_t, int32_t, INT16_MIN, INT16_MAX)

/* ------------------------------------------------------------------ Python glue */

/* The integer type of a buffer's items: 0 for uint8, 1 int8, 2 uint16, 3 int16, -1 other. */
static int integer_kind(const Py_buffer *view)
{
    const char *kinds = "BbHh";
    if (!has_format(view, kinds, view->itemsize))
        return -1;
    int kind = (int)(strchr(kinds, item_format(view)) - kinds);
    return view->itemsize == (kind < 2 ? 1 : 2) ? kind : -1;
}

/* The buffers of block_sums' arguments, checked; -1 with an exception set. */
static int block_views(PyObject *const *args, Py_buffer *views)
{
    static const int flags[7] = {
        PyBUF_RECORDS_RO, PyBUF_RECORDS_RO, PyBUF_RECORDS_RO, PyBUF_RECORDS_RO,
        PyBUF_RECORDS, PyBUF_RECORDS, PyBUF_RECORDS};
    for (int i = 0; i < 7; i++) {
        if (i == 1 && args[i] == Py_None) {
            views[i].obj = NULL;
            continue;
        }
        if (PyObject_GetBuffer(args[i], &views[i], flags[i]) < 0) {
            while (--i >= 0)
                if (views[i].obj)
                    PyBuffer_Release(&views[i]);
            return -1;
        }
    }
    return 0;
}

static int check_blocks(Py_buffer *views, int kind)
{
    Py_buffer *values = &views[0], *valid = &views[1];
    if (kind < 0)
        return fail("values must be 8- or 16-bit integers");
    if (values->ndim != 3 || values->strides[2] != values->itemsize)
        return fail("values must be (bands, rows, cols), contiguous along a row");
    if (valid->obj) {
        if (valid->ndim != 3 || !has_format(valid, "?", 1) || valid->strides[2] != 1)
            return fail("valid must be booleans shaped like values, contiguous along a row");
        for (int axis = 0; axis < 3; axis++)
            if (valid->shape[axis] != values->shape[axis])
                return fail("valid must be shaped like values");
    }
    for (int i = 2; i < 4; i++)
        if (views[i].ndim != 1 || !has_format(&views[i], "qln", 8) || !PyBuffer_IsContiguous(&views[i], 'C'))
            return fail("block starts must be contiguous 64-bit integers");
    Py_ssize_t blocks = views[2].shape[0] * views[3].shape[0];
    for (int i = 4; i < 7; i++)
        if (views[i].ndim != 2 || !has_format(&views[i], "d", 8) || !PyBuffer_IsContiguous(&views[i], 'C')
            || views[i].shape[0] != values->shape[0] || views[i].shape[1] != blocks)
            return fail("outputs must be contiguous float64 (bands, blocks)");
    const int64_t *starts[2] = {views[2].buf, views[3].buf};
    for (int axis = 0; axis < 2; axis++) {
        Py_ssize_t n = views[2 + axis].shape[0], size = values->shape[1 + axis];
        for (Py_ssize_t i = 0; i < n; i++)
            if (starts[axis][i] < 0 || (size > 0 && starts[axis][i] >= size)
                || (i ? starts[axis][i] <= starts[axis][i - 1] : starts[axis][i] != 0))
                return fail("block starts must increase from 0 within the window");
    }
    Py_ssize_t tallest = 0, widest = 0;
    for (int axis = 0; axis < 2; axis++) {
        Py_ssize_t n = views[2 + axis].shape[0], size = values->shape[1 + axis], most = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t end = i + 1 < n ? starts[axis][i + 1] : size;
            most = end - starts[axis][i] > most ? end - starts[axis][i] : most;
        }
        *(axis ? &widest : &tallest) = most;
    }
    if (tallest * widest > MAX_BLOCK_PIXELS)
        return fail("blocks must hold at most 2**12 pixels");
    return 0;
}

static PyObject *block_sums(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "block_sums(values, valid, row_starts, col_starts, count, total, squares)");
        return NULL;
    }
    Py_buffer views[7];
    if (block_views(args, views) < 0)
        return NULL;
    int kind = integer_kind(&views[0]);
    if (check_blocks(views, kind) < 0) {
        release(views, 7);
        return NULL;
    }
    Py_buffer *values = &views[0], *valid = &views[1];
    Py_ssize_t bands = values->shape[0], rows = values->shape[1], cols = values->shape[2];
    Py_ssize_t n_rows = views[2].shape[0], n_cols = views[3].shape[0];
    Py_ssize_t blocks = n_rows * n_cols;
    /* scratch: column sums (32 bits), squares (64), counts (32) */
    char *scratch = PyMem_RawMalloc(cols ? cols * 16 : 1);
    if (!scratch) {
        release(views, 7);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t band = 0; band < bands; band++) {
        const char *data = (const char *)values->buf + band * values->strides[0];
        const char *kept = valid->obj ? (const char *)valid->buf + band * valid->strides[0] : NULL;
        Py_ssize_t kept_pitch = valid->obj ? valid->strides[1] : 0;
        double *count = (double *)views[4].buf + band * blocks;
        double *total = (double *)views[5].buf + band * blocks;
        double *squares = (double *)views[6].buf + band * blocks;
        uint64_t *column_squares = (uint64_t *)scratch;
        uint32_t *column_count = (uint32_t *)(scratch + cols * 8);
        void *column_sum = scratch + cols * 12;
#define CALL(FUNCTION, SUM_T)                                                            \
    FUNCTION(data, values->strides[1], kept, kept_pitch, rows, cols, views[2].buf, n_rows, \
             views[3].buf, n_cols, count, total, squares, (SUM_T *)column_sum,           \
             column_squares, column_count)
        switch (kind) {
        case 0: CALL(block_sums_u8, uint32_t); break;
        case 1: CALL(block_sums_i8, int32_t); break;
        case 2: CALL(block_sums_u16, uint32_t); break;
        default: CALL(block_sums_i16, int32_t); break;
        }
#undef CALL
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(scratch);
    release(views, 7);
    Py_RETURN_NONE;
}

static PyObject *band_sums(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "band_sums(values, valid)");
        return NULL;
    }
    Py_buffer views[2] = {{0}, {0}};
    if (PyObject_GetBuffer(args[0], &views[0], PyBUF_RECORDS_RO) < 0)
        return NULL;
    if (args[1] != Py_None && PyObject_GetBuffer(args[1], &views[1], PyBUF_RECORDS_RO) < 0) {
        release(views, 1);
        return NULL;
    }
    int kind = integer_kind(&views[0]);
    int bad = kind < 0 || views[0].ndim != 1 || !PyBuffer_IsContiguous(&views[0], 'C')
              || views[0].shape[0] >= ((Py_ssize_t)1 << 32);
    if (views[1].obj)
        bad = bad || views[1].ndim != 1 || !has_format(&views[1], "?", 1)
              || !PyBuffer_IsContiguous(&views[1], 'C') || views[1].shape[0] != views[0].shape[0];
    if (bad) {
        release(views, 2);
        PyErr_SetString(PyExc_ValueError,
                        "band_sums takes fewer than 2**32 contiguous 8- or 16-bit integers "
                        "and booleans of the same length");
        return NULL;
    }
    uint64_t count, squares;
    int64_t total, low, high;
    const char *data = views[0].buf, *valid = views[1].obj ? views[1].buf : NULL;
    Py_ssize_t n = views[0].shape[0];
    Py_BEGIN_ALLOW_THREADS
    switch (kind) {
    case 0: band_sums_u8(data, valid, n, &count, &total, &squares, &low, &high); break;
    case 1: band_sums_i8(data, valid, n, &count, &total, &squares, &low, &high); break;
    case 2: band_sums_u16(data, valid, n, &count, &total, &squares, &low, &high); break;
    default: band_sums_i16(data, valid, n, &count, &total, &squares, &low, &high); break;
    }
    Py_END_ALLOW_THREADS
    release(views, 2);
    return Py_BuildValue("(KLKLL)", (unsigned long long)count, (long long)total,
                         (unsigned long long)squares, (long long)low, (long long)high);
}

static PyMethodDef methods[] = {
    {"block_sums", (PyCFunction)(void (*)(void))block_sums, METH_FASTCALL,
     "block_sums(values, valid, row_starts, col_starts, count, total, squares)\n\n"
     "Per band and block of a (bands, rows, cols) window of 8- or 16-bit integers: the\n"
     "valid pixels, their sum and their sum of squares, written into the float64\n"
     "(bands, blocks) arrays count, total and squares (valid: booleans, or None)."},
    {"band_sums", (PyCFunction)(void (*)(void))band_sums, METH_FASTCALL,
     "band_sums(values, valid) -> (count, sum, sum_of_squares, minimum, maximum)\n\n"
     "Of the valid values of a 1-D array of 8- or 16-bit integers (valid: booleans, or\n"
     "None), as integers; the extremes are 0 where no value is valid."},
    {NULL, NULL, 0, NULL}};

COMPILED_MODULE(_sums,
                "Exact sums of small integers in one pass (the numpy code of moments.py is the "
                "fallback).",
                methods)
