/*
 * weighted.h — combining adapters into a new one: PEFT's add_weighted_adapter ("linear", "cat").
 */
#ifndef CP_PEFT_WEIGHTED_H
#define CP_PEFT_WEIGHTED_H

#include "core/error.h"
#include "models/model.h"
#include "peft/method.h" /* cp_combination */

/* Adds adapter `new_name` combining `names` (all of one method) with `weights` (not activated, as
 * in PEFT). */
cp_status cp_peft_add_weighted_adapter(cp_model *m, const char *const *names, const double *weights, int n,
                                       const char *new_name, cp_combination combination);

#endif
