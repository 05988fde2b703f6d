/*
 * activation.c — activation functions, forward and backward side by side.
 * Formulas follow transformers' activations.py (see reference/architectures.md §0.3, §13).
 *
 * The tanh-GELU family uses the identity 0.5·(1 + tanh(u)) = sigmoid(2u), so gelu_new(x) =
 * x·sigmoid(2u) with u = √(2/π)·(x + 0.044715·x³): one vectorised exp per element instead of a scalar
 * tanhf call, and no cancellation near u = 0. SiLU likewise uses the vectorised sigmoid. Those two run
 * in kernels/vector.c, built for the CPU's vector width; the rare ones stay plain loops here.
 */
#include "nn/activation.h"
#include "kernels/vector.h"

#include <math.h>
#include <string.h>

static const struct { const char *name, *class_name; } activations[CP_ACT_COUNT] = {
    [CP_ACT_GELU_NEW] = {"gelu_new", "NewGELUActivation"},
    [CP_ACT_GELU] = {"gelu", "GELUActivation"},
    [CP_ACT_GELU_FAST] = {"gelu_fast", "FastGELUActivation"},
    [CP_ACT_GELU_PYTORCH_TANH] = {"gelu_pytorch_tanh", "GELUTanh"},
    [CP_ACT_QUICK_GELU] = {"quick_gelu", "QuickGELUActivation"},
    [CP_ACT_RELU] = {"relu", "ReLU"},
    [CP_ACT_SILU] = {"silu", "SiLUActivation"},
    [CP_ACT_TANH] = {"tanh", "Tanh"},
    [CP_ACT_SIGMOID] = {"sigmoid", "Sigmoid"},
    [CP_ACT_LINEAR] = {"linear", "LinearActivation"},
    [CP_ACT_BLOOM_GELU] = {"bloom_gelu", "BloomGelu"},
};

int cp_activation_from_name(const char *name) {
    if (strcmp(name, "swish") == 0) return CP_ACT_SILU;
    for (int i = 0; i < CP_ACT_COUNT; i++)
        if (i != CP_ACT_BLOOM_GELU && strcmp(name, activations[i].name) == 0) return i; /* not an ACT2FN name */
    return -1;
}

const char *cp_activation_name(cp_activation act) { return activations[act].name; }
const char *cp_activation_class_name(cp_activation act) { return activations[act].class_name; }
const char *cp_activation_supported(void) {
    return "gelu_new, gelu, gelu_fast, gelu_pytorch_tanh, quick_gelu, relu, silu (swish), tanh, sigmoid, linear";
}

void cp_activation_forward(cp_activation act, float *y, const float *x, int64_t n) {
    switch (act) {
    case CP_ACT_GELU_NEW:
    case CP_ACT_GELU_PYTORCH_TANH:
    case CP_ACT_GELU_FAST:
    case CP_ACT_BLOOM_GELU: /* x·0.5·(1 + tanh(0.79788456·x·(1 + 0.044715·x²))): the same function */
        cp_gelu_tanh(y, x, n);
        break;
    case CP_ACT_GELU:
        cp_gelu_erf(y, x, n);
        break;
    case CP_ACT_QUICK_GELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    case CP_ACT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case CP_ACT_SILU:
        cp_silu(y, x, n);
        break;
    case CP_ACT_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case CP_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case CP_ACT_LINEAR:
    case CP_ACT_COUNT:
        if (y != x) memmove(y, x, (size_t)n * sizeof *y);
        break;
    }
}

void cp_activation_backward(cp_activation act, float *dx, const float *dy, const float *x, int64_t n) {
    switch (act) {
    case CP_ACT_GELU_NEW:
    case CP_ACT_GELU_PYTORCH_TANH:
    case CP_ACT_GELU_FAST:
    case CP_ACT_BLOOM_GELU:
        cp_gelu_tanh_backward(dx, dy, x, n);
        break;
    case CP_ACT_GELU:
        cp_gelu_erf_backward(dx, dy, x, n);
        break;
    case CP_ACT_QUICK_GELU:
        for (int64_t i = 0; i < n; i++) {
            float s = 1.0f / (1.0f + expf(-1.702f * x[i]));
            dx[i] = dy[i] * (s + 1.702f * x[i] * s * (1.0f - s));
        }
        break;
    case CP_ACT_RELU:
        for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
        break;
    case CP_ACT_SILU:
        cp_silu_backward(dx, dy, x, n);
        break;
    case CP_ACT_TANH:
        for (int64_t i = 0; i < n; i++) { float t = tanhf(x[i]); dx[i] = dy[i] * (1.0f - t * t); }
        break;
    case CP_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) { float s = 1.0f / (1.0f + expf(-x[i])); dx[i] = dy[i] * s * (1.0f - s); }
        break;
    case CP_ACT_LINEAR:
    case CP_ACT_COUNT:
        if (dx != dy) memmove(dx, dy, (size_t)n * sizeof *dx);
        break;
    }
}
