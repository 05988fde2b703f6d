/*
 * pyfmt.h — numbers formatted exactly as Python prints them, because PEFT's and PyTorch's output
 * is Python's: repr(float) in "trainable%: 0.17901458067543818" and in module reprs such as
 * "LayerNorm((2048,), eps=1e-05, elementwise_affine=True)".
 */
#ifndef CP_CORE_PYFMT_H
#define CP_CORE_PYFMT_H

#include <stddef.h>

/* Python's repr(x) for a float: the shortest string that round-trips, in Python's layout
 * ("0.1", "1e-05", "1.0", "1e+16", "inf", "nan"). buf needs at least 32 bytes. */
const char *cp_py_float_repr(double x, char *buf, size_t bufsize);

#endif
