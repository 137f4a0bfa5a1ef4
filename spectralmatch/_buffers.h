/* Checks of the buffers that the compiled modules of spectralmatch are handed
   (stats/_sums.c, raster/_convert.c): arrays come through the buffer protocol, so that
   no numpy headers are needed to build them. */

#ifndef SPECTRALMATCH_BUFFERS_H
#define SPECTRALMATCH_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

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

#endif
