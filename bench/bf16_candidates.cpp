// bf16_candidates.cpp — the candidates for --bf16's products (issue 16), side by side on N = 1024 rows of GPT-2
// (768 / 2304 / 3072) and SmolLM2-135M (576 / 1536 / 192) shapes, NT (nn.Linear) and NN (Conv1D) weights:
// OpenBLAS's sgemm (f32, what cpeft runs without --bf16), cpeft's AVX-512 BF16 kernel (cp_gemm_bf16_dot, packing
// included), the same kernel on a weight packed once (cp_gemm_bf16_dot_packed: what --bf16 training runs since the
// panels are cached), oneDNN's matmul in f32 and in bf16 (bf16 source and weights, f32 destination; its source
// rounded to bf16 beforehand, outside the timing, which the cpeft kernels include). The five take turns,
// R rounds; each prints its best single run (a shared machine: the best is the least disturbed). OpenBLAS's
// cblas_sbgemm is no candidate: Debian's 0.3.21 declares it but its library lacks it (no BUILD_BFLOAT16).
// Not built by make (it needs oneDNN, which cpeft does not use); on Debian, after apt-get install libdnnl-dev:
//
//   g++ -O2 bench/bf16_candidates.cpp -o /tmp/bf16_candidates -I/usr/include/x86_64-linux-gnu/openblas-openmp \
//       build/libcpeft.a -ldnnl -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -fopenmp -lm
//   OMP_NUM_THREADS=2 /tmp/bf16_candidates 40
#include <dnnl.hpp>
#include <cblas.h>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>
#include <cstdlib>
extern "C" int cp_gemm_bf16_dot(float *out, const float *X, const void *W, int w_dtype, int nn, int64_t N, int64_t K, int64_t M, int accumulate);
extern "C" uint16_t cp_f32_to_bf16(float f);
extern "C" int64_t cp_gemm_bf16_panel_words(int64_t K, int64_t M);
extern "C" void cp_gemm_bf16_pack(uint32_t *B, const void *W, int w_dtype, int nn, int64_t K, int64_t M);
extern "C" int cp_gemm_bf16_dot_packed(float *out, const float *X, const uint32_t *B, int64_t N, int64_t K, int64_t M, int accumulate);
using namespace dnnl;
static double now(){return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();}
int main(int argc,char**argv){
  int R = argc>1? atoi(argv[1]) : 30;
  engine eng(engine::kind::cpu,0); stream s(eng);
  int shapes[][2]={{768,768},{768,2304},{768,3072},{3072,768},{576,576},{576,1536},{1536,576},{576,192}};
  int N=1024;
  printf("OpenBLAS core %s\n", openblas_get_corename());
  for(auto&sh:shapes) for(int nn=0;nn<2;nn++){ int K=sh[0],M=sh[1];
    std::vector<float> X((size_t)N*K), W((size_t)M*K), O((size_t)N*M);
    std::vector<uint16_t> Wb((size_t)M*K);
    for(auto&x:X) x=rand()/(float)RAND_MAX-.5f; for(auto&w:W) w=(rand()/(float)RAND_MAX-.5f)*.1f;
    for(size_t i=0;i<W.size();i++) Wb[i]=cp_f32_to_bf16(W[i]);
    primitive p[2]; memory A[2],B[2],C[2];
    for(int dt=0;dt<2;dt++){
      auto t = dt? memory::data_type::bf16 : memory::data_type::f32;
      memory::desc a({N,K},t,memory::format_tag::ab), b({K,M},t,nn? memory::format_tag::ab : memory::format_tag::ba), c({N,M},memory::data_type::f32,memory::format_tag::ab);
      auto pd = matmul::primitive_desc(matmul::desc(a,b,c),eng);
      p[dt]=matmul(pd); A[dt]=memory(a,eng); B[dt]=memory(b,eng); C[dt]=memory(c,eng);
      if(dt==0){ memcpy(A[0].get_data_handle(),X.data(),X.size()*4); memcpy(B[0].get_data_handle(),W.data(),W.size()*4);} 
      else { auto*xa=(uint16_t*)A[1].get_data_handle(); for(size_t i=0;i<X.size();i++) xa[i]=cp_f32_to_bf16(X[i]); memcpy(B[1].get_data_handle(),Wb.data(),Wb.size()*2);} 
    }
    std::vector<uint32_t> P((size_t)cp_gemm_bf16_panel_words(K,M));
    cp_gemm_bf16_pack(P.data(),Wb.data(),14,nn,K,M);
    double best[5]={1e9,1e9,1e9,1e9,1e9};
    for(int r=0;r<R;r++){
      double t0=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,nn?CblasNoTrans:CblasTrans,N,M,K,1,X.data(),K,W.data(),nn?M:K,0,O.data(),M); double e=now()-t0; if(e<best[0])best[0]=e;
      t0=now(); cp_gemm_bf16_dot(O.data(),X.data(),Wb.data(),14 /* CP_BF16 */,nn,N,K,M,0); e=now()-t0; if(e<best[1])best[1]=e;
      t0=now(); cp_gemm_bf16_dot_packed(O.data(),X.data(),P.data(),N,K,M,0); e=now()-t0; if(e<best[4])best[4]=e;
      for(int dt=0;dt<2;dt++){ t0=now(); p[dt].execute(s,{{DNNL_ARG_SRC,A[dt]},{DNNL_ARG_WEIGHTS,B[dt]},{DNNL_ARG_DST,C[dt]}}); s.wait(); e=now()-t0; if(e<best[2+dt])best[2+dt]=e; }
    }
    double f=2.0*N*K*M/1e9;
    printf("N=%d K=%4d M=%4d %s | sgemm %6.1f | cpeft bf16 %6.1f | cpeft bf16 packed %6.1f | oneDNN f32 %6.1f | oneDNN bf16 %6.1f GFLOP/s\n",N,K,M,nn?"NN":"NT",f/best[0],f/best[1],f/best[4],f/best[2],f/best[3]);
    fflush(stdout);
  }
}
