/* What the compiled modules of spectralmatch (stats/_sums.c, raster/_conversion.c) share:
   checks of the buffers they are handed (arrays come through the buffer protocol, so
   that no numpy headers are needed to build them), and their loops built twice. */

#ifndef SPECTRALMATCH_COMPILED_H
#define SPECTRALMATCH_COMPILED_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A loop compiled twice on x86-64 Linux, for AVX2 and for any x86-64, the loader
   picking the one the processor runs: the same operations, the same results. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

/* The one format character of a buffer of items in this machine's byte order ('B'
   where the buffer gives none), or 0 where its format is another. */
static char item_format(const Py_buffer *view)
{
    const char *format = view->format ? view->format : "B";
    if (*format == '@' || *format == '=' || *format == (PY_LITTLE_ENDIAN ? '<' : '>'))
        format++;
    return format[0] != '\0' && format[1] == '\0' ? format[0] : 0;
}

/* Whether a buffer holds items of `itemsize` bytes of one of the format characters
   `kinds`. */
static int has_format(const Py_buffer *view, const char *kinds, Py_ssize_t itemsize)
{
    char format = item_format(view);
    return format != 0 && view->itemsize == itemsize && strchr(kinds, format) != NULL;
}

/* -1, with a ValueError saying `message`. */
static int fail(const char *message)
{
    PyErr_SetString(PyExc_ValueError, message);
    return -1;
}

/* Release the first `n` of `views` (those held: a view of None has no object). */
static void release(Py_buffer *views, int n)
{
    for (int i = 0; i < n; i++)
        if (views[i].obj)
            PyBuffer_Release(&views[i]);
}

/* The module NAME (a bare name) with the methods `methods` (ending with the NULL
   entry), documented by `doc`, and the function that imports it. */
#define COMPILED_MODULE(NAME, doc, methods)                                             \
    static struct PyModuleDef module_definition = {PyModuleDef_HEAD_INIT, #NAME, doc, -1,    \
                                                   methods};                               \
    PyMODINIT_FUNC PyInit_##NAME(void) { return PyModule_Create(&module_definition); }

#endif
