// Rendering DOT text in-process with Graphviz (libgvc + libcgraph). Kept apart from the DOT
// writer so that only this file sees Graphviz's C headers.
#include <mutex>
#include <string>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include "deltagraph/dot.h"

namespace dg {

namespace {

// Graphviz keeps global state (the parser, the error handler), so calls are serialised.
std::mutex& graphviz_mutex() {
  static std::mutex m;
  return m;
}

// Messages Graphviz reports while the mutex is held; its error callback has no user pointer.
std::string& graphviz_messages() {
  static std::string messages;
  return messages;
}

int collect_graphviz_message(char* message) {
  graphviz_messages() += message;
  return 0;
}

// Restores Graphviz's error handler and frees what was allocated, on every path out.
class GraphvizSession {
 public:
  GraphvizSession() : lock_(graphviz_mutex()) {
    graphviz_messages().clear();
    previous_handler_ = agseterrf(collect_graphviz_message);
    context_ = gvContext();
  }
  ~GraphvizSession() {
    if (graph_) {
      if (laid_out_) gvFreeLayout(context_, graph_);
      agclose(graph_);
    }
    if (context_) gvFreeContext(context_);
    agseterrf(previous_handler_);
  }
  GraphvizSession(const GraphvizSession&) = delete;
  GraphvizSession& operator=(const GraphvizSession&) = delete;

  GVC_t* context_ = nullptr;
  Agraph_t* graph_ = nullptr;
  bool laid_out_ = false;

 private:
  std::lock_guard<std::mutex> lock_;
  agusererrf previous_handler_ = nullptr;
};

// Graphviz's own words, trimmed, for an error message ("" if it said nothing).
std::string graphviz_said() {
  std::string text = graphviz_messages();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.empty() ? "" : " (Graphviz: " + text + ")";
}

}  // namespace

std::string render_dot(const std::string& dot_text, const std::string& format) {
  if (format != "svg" && format != "png")
    fail("render_dot: unsupported format '{}'; use \"svg\" or \"png\"", format);
  GraphvizSession session;
  if (!session.context_) fail("render_dot: Graphviz could not create a context{}", graphviz_said());
  session.graph_ = agmemread(dot_text.c_str());
  if (!session.graph_) fail("render_dot: Graphviz could not parse the DOT text{}", graphviz_said());
  if (gvLayout(session.context_, session.graph_, "dot") != 0)
    fail("render_dot: the Graphviz 'dot' layout failed{}", graphviz_said());
  session.laid_out_ = true;
  char* data = nullptr;
  unsigned int length = 0;
  if (gvRenderData(session.context_, session.graph_, format.c_str(), &data, &length) != 0 || !data) {
    if (data) gvFreeRenderData(data);
    fail("render_dot: Graphviz could not render {} (is its {} plugin installed? `dot -T{}` should work){}",
         format, format, format, graphviz_said());
  }
  std::string bytes(data, length);
  gvFreeRenderData(data);
  return bytes;
}

}  // namespace dg
