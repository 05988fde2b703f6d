/*
 * activation.h — the activation functions Hugging Face configs name (ACT2FN), forward and backward.
 */
#ifndef CP_NN_ACTIVATION_H
#define CP_NN_ACTIVATION_H

#include <stdint.h>

typedef enum {
    CP_ACT_GELU_NEW,          /* "gelu_new": tanh approximation */
    CP_ACT_GELU,              /* "gelu": exact erf */
    CP_ACT_GELU_FAST,         /* "gelu_fast" */
    CP_ACT_GELU_PYTORCH_TANH, /* "gelu_pytorch_tanh" */
    CP_ACT_QUICK_GELU,        /* "quick_gelu": x * sigmoid(1.702 x) */
    CP_ACT_RELU,
    CP_ACT_SILU,              /* "silu" / "swish" */
    CP_ACT_TANH,
    CP_ACT_SIGMOID,
    CP_ACT_LINEAR,            /* identity */
    CP_ACT_BLOOM_GELU,        /* BloomGelu: the tanh GELU under its own class; no config names it */
    CP_ACT_COUNT
} cp_activation;

/* Parses a config string; returns -1 when unknown. */
int cp_activation_from_name(const char *name);
const char *cp_activation_name(cp_activation act);
/* The module class transformers instantiates for it, as its repr shows ("NewGELUActivation"). */
const char *cp_activation_class_name(cp_activation act);
/* A comma-separated list of the supported names, for error messages. */
const char *cp_activation_supported(void);

/* y = act(x), n elements; y may alias x. */
void cp_activation_forward(cp_activation act, float *y, const float *x, int64_t n);
/* dx = dy * act'(x), n elements; dx may alias dy. */
void cp_activation_backward(cp_activation act, float *dx, const float *dy, const float *x, int64_t n);

#endif
