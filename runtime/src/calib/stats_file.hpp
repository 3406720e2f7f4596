// stats_file.hpp: the statistics file of `odyssey-rt calib`'s collect command
// (docs/gpu-calibration.md, "Statistics file"; the Go reader is gpu/calibstats.go). Host only
// (g++ alone; tested by runtime/tests/test_executor_host.cpp).
//
// Layout, little-endian: header "ODYCALS1", u32 layer, u32 n_inputs (4), u32 n_outputs, u32 0,
// i64 rows; per input: u32 kind, u32 in, u32 xtx (0 none, 1 f32, 2 f64), u32 0, f64 token_sum,
// f32 token_min, u32 0, f32 min[in], f32 max[in], f64 sumsq[in], XᵀX [in·in]; per output:
// u32 kind, u32 0, f64 sumsq; trailer "ODYCALE1".
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace odyssey::calibgpu {

// Writes a statistics file through a FILE*, one record at a time, so that a Hessian can be
// streamed from the device in slices. Every write is checked (a full disk throws).
class StatsFileWriter {
 public:
  explicit StatsFileWriter(const std::string& path);
  ~StatsFileWriter();
  StatsFileWriter(const StatsFileWriter&) = delete;
  StatsFileWriter& operator=(const StatsFileWriter&) = delete;
  void header(std::uint32_t layer, std::uint32_t n_inputs, std::uint32_t n_outputs, std::int64_t rows);
  // The input record up to and including sumsq; then xtx_f32 slices when xtx is 1, xtx_f64
  // slices when it is 2 (the fp32 precision's fp64 accumulator).
  void input(std::uint32_t kind, std::uint32_t in, std::uint32_t xtx, double token_sum, float token_min,
             const float* mn, const float* mx, const double* sumsq);
  void xtx_f32(const float* v, std::size_t n);
  void xtx_f64(const double* v, std::size_t n);
  void output(std::uint32_t kind, double sumsq);
  // Writes the trailer and closes the file (throws on a failed close).
  void finish();

 private:
  void put(const void* p, std::size_t n);
  std::string path_;
  std::FILE* f_ = nullptr;
};

// A parsed statistics file (host tests).
struct StatsInput {
  std::uint32_t kind = 0, in = 0, xtx = 0;
  double token_sum = 0;
  float token_min = 0;
  std::vector<float> mn, mx;
  std::vector<double> sumsq;
  std::vector<double> xtx_values;  // widened
};
struct StatsFile {
  std::uint32_t layer = 0;
  std::int64_t rows = 0;
  std::vector<StatsInput> inputs;
  std::vector<std::pair<std::uint32_t, double>> outputs;
};
// Parses a file image; throws FormatError (safetensors.hpp) for a bad magic, a width above
// max_width, a truncated or longer file.
StatsFile parse_stats_file(const std::uint8_t* data, std::size_t size, std::uint32_t max_width, const std::string& name);

}  // namespace odyssey::calibgpu
