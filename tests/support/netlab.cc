#include "tests/support/netlab.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace arpguard::testing {

namespace {

std::atomic<int> g_counter{0};

std::string unique(const std::string& role) {
  return "agt-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++) + "-" + role;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

CommandResult run(const std::string& command) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  CommandResult result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? result.out : result.err).append(buffer, n);
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string arpguard_bin() {
  const char* path = std::getenv("ARPGUARD_BIN");
  return path ? path : "arpguard";
}

std::string arpguardd_bin() {
  const char* path = std::getenv("ARPGUARDD_BIN");
  return path ? path : "arpguardd";
}

void sweep_stale_namespaces() {
  std::istringstream list(run("ip netns list").out);
  for (std::string line; std::getline(list, line);) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind("agt-", 0) != 0) continue;
    const pid_t owner = std::atoi(name.c_str() + 4);
    if (owner > 0 && kill(owner, 0) != 0) run("ip netns del " + name);
  }
}

TempDir::TempDir() {
  char pattern[] = "/tmp/agt-XXXXXX";
  if (!mkdtemp(pattern)) throw std::runtime_error("mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() { run("rm -rf " + quote(path_)); }

std::string TempDir::write(const std::string& name, const std::string& text) const {
  const std::string path = path_ + "/" + name;
  std::ofstream(path) << text;
  return path;
}

Netns::Netns(const std::string& role) : name_(unique(role)) {
  CommandResult r = run("ip netns add " + name_ + " && ip netns exec " + name_ + " ip link set lo up");
  if (r.exit_code != 0) throw std::runtime_error("ip netns add " + name_ + ": " + r.err);
}

Netns::~Netns() {
  // Processes still inside would keep the namespace's devices alive.
  run("for p in $(ip netns pids " + name_ + " 2>/dev/null); do kill -9 $p; done; ip netns del " + name_);
}

CommandResult Netns::exec(const std::string& command) const { return run(prefix() + "sh -c " + quote(command)); }

std::string Netns::must(const std::string& command) const {
  CommandResult r = exec(command);
  if (r.exit_code != 0) {
    throw std::runtime_error("in " + name_ + ": `" + command + "` exited " + std::to_string(r.exit_code) + ": " + r.err);
  }
  return r.out;
}

Process::Process(const std::string& command, std::string log_file) : log_file_(std::move(log_file)) {
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    const int fd = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid_, pid_);
}

Process::~Process() {
  if (running()) {
    signal(SIGTERM);
    if (wait(3) < 0) {
      signal(SIGKILL);
      wait(3);
    }
  }
}

bool Process::running() {
  if (pid_ < 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }
  return r == 0;
}

void Process::signal(int sig) const {
  if (pid_ > 0) kill(-pid_, sig);
}

int Process::wait(double seconds) {
  eventually([&] { return !running(); }, seconds);
  return pid_ < 0 ? exit_code_ : -1;
}

std::string Process::log() const { return read_file(log_file_); }

bool Process::wait_for_log(const std::string& text, double seconds) const {
  return eventually([&] { return log().find(text) != std::string::npos; }, seconds);
}

ArpCapture::ArpCapture(const Netns& ns, const std::string& interface, const std::string& log_file)
    : out_file_(log_file + ".frames"),
      process_(ns.prefix() + "tcpdump --immediate-mode -i " + interface + " -e -n -l -U arp > " + out_file_, log_file) {
  if (!process_.wait_for_log("listening on", 5)) throw std::runtime_error("tcpdump did not start: " + process_.log());
}

std::vector<std::string> ArpCapture::stop() {
  // Frames still in flight through the veth pair reach tcpdump first.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  process_.signal(SIGINT);
  process_.wait(5);
  std::vector<std::string> lines;
  std::istringstream in(read_file(out_file_));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

Segment::Segment() {
  CommandResult r = run("ip link add eth0 netns " + rs.name() + " address " + kRsMac + " type veth peer name eth0 netns " +
                        client.name() + " address 02:00:00:00:00:02");
  if (r.exit_code != 0) throw std::runtime_error("veth: " + r.err);
  rs.must(std::string("ip addr add ") + kRsIp + "/24 dev eth0 && ip link set eth0 up");
  client.must(std::string("ip addr add ") + kClientIp + "/24 dev eth0 && ip link set eth0 up");
  // Frames sent before the carrier is up are lost: wait for both ends.
  const bool up = eventually([&] {
    return rs.exec("ip -br link show eth0").out.find(" UP ") != std::string::npos &&
           client.exec("ip -br link show eth0").out.find(" UP ") != std::string::npos;
  });
  if (!up) throw std::runtime_error("veth pair did not come up");
}

std::vector<std::string> Segment::arp_replies(const std::string& ip) const {
  // Habets arping: one line "N bytes from MAC (IP): ..." per reply.
  CommandResult r = client.exec("arping -c 3 -W 0.1 -w 1 -i eth0 " + ip);
  std::vector<std::string> macs;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const size_t from = line.find(" bytes from ");
    if (from != std::string::npos) macs.push_back(line.substr(from + 12, 17));
  }
  return macs;
}

}  // namespace arpguard::testing
