/*
 * lstm.h — torch.nn.LSTM (batch_first, optionally bidirectional, num_layers deep, dropout between
 * layers), forward and backward through time, for one sequence: what PEFT's p-tuning encoder runs
 * (PromptEncoder's lstm_head over the virtual tokens, one sample).
 *
 * Per layer and direction, PyTorch's parameters and gate order:
 *   gates = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh        W_ih (4H, In), W_hh (4H, H), b_* (4H)
 *   i, f, g, o = σ(gates[0:H]), σ(gates[H:2H]), tanh(gates[2H:3H]), σ(gates[3H:4H])
 *   c_t = f ⊙ c_{t-1} + i ⊙ g,  h_t = o ⊙ tanh(c_t),      h_{-1} = c_{-1} = 0
 * The reverse direction runs t = T-1 … 0; a layer's output is (T, D·H), the directions side by side
 * (forward first), and the next layer's input. Parameters are stored layer-major, direction-minor
 * ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", then the same with "_reverse"), as
 * named_parameters lists them.
 *
 * What it is not: batched, or fast. The sequences PEFT feeds it are a few dozen rows.
 */
#ifndef CP_NN_LSTM_H
#define CP_NN_LSTM_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "nn/module.h"

typedef struct cp_lstm {
    int64_t input_size, hidden_size, num_layers;
    int directions;    /* 1, or 2 (bidirectional) */
    double dropout;    /* on every layer's output but the last, in training */
    cp_param **params; /* [num_layers · directions · 4]: weight_ih, weight_hh, bias_ih, bias_hh */
} cp_lstm;

/* The parameters named "<prefix>.weight_ih_l0", ..., owned f32 data, zeroed. */
cp_status cp_lstm_init(cp_lstm *l, const char *prefix, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                       int bidirectional, double dropout);
void cp_lstm_free(cp_lstm *l);
int cp_lstm_num_params(const cp_lstm *l);
/* torch's repr: "LSTM(32, 32, num_layers=2, batch_first=True, bidirectional=True)". Malloc'd. */
char *cp_lstm_repr(const cp_lstm *l);

/* What the backward needs, from the arena. */
typedef struct cp_lstm_trace cp_lstm_trace;

/* y (T, D·H) for x (T, In). With `training` and dropout > 0, each layer's output but the last is
 * dropped with masks drawn from `seed`. *trace (in ar) is what the backward needs. */
cp_status cp_lstm_forward(const cp_lstm *l, cp_arena *ar, const float *x, int64_t T, int training, uint64_t seed, float *y,
                          cp_lstm_trace **trace);
/* From dy (T, D·H): the gradients of every parameter with a grad buffer, and dx (T, In) += the input
 * gradient when dx is non-NULL. Scratch from ar (given back). */
cp_status cp_lstm_backward(const cp_lstm *l, cp_arena *ar, const cp_lstm_trace *trace, const float *dy, float *dx);

#endif
