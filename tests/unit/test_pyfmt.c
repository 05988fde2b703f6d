/* test_pyfmt.c — Python float repr against strings Python itself prints. */
#include "test.h"
#include "core/pyfmt.h"

static void expect(double x, const char *want) {
    char buf[64];
    cp_py_float_repr(x, buf, sizeof buf);
    CHECK(strcmp(buf, want) == 0, "repr(%.17g): got %s, want %s", x, buf, want);
}

TEST(python_float_repr) {
    expect(0.17901458067543818, "0.17901458067543818");
    expect(1e-05, "1e-05");
    expect(1e-12, "1e-12");
    expect(0.0001, "0.0001");
    expect(0.1, "0.1");
    expect(1.0, "1.0");
    expect(-2.5, "-2.5");
    expect(100.0, "100.0");
    expect(1e16, "1e+16");
    expect(123456789012345.0, "123456789012345.0");
    expect(1.5e-7, "1.5e-07");
    expect(0.0, "0.0");
    expect(100 * 2359296.0 / 1317935104.0, "0.17901458067543818");
    expect(1.0 / 3.0, "0.3333333333333333");
    expect(2.0 / 3.0 * 1e20, "6.666666666666666e+19");
}

int main(void) {
    RUN(python_float_repr);
    return test_summary();
}
