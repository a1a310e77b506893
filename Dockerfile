# The distro node image, built offline: FROM scratch with the static
# binary and a userland from Debian packages (scripts/docker-rootfs.sh).
#   make image
#   docker run -d --privileged --name s1 distro server
#   docker run -d --privileged distro agent --server https://s1:6443 --token K10…
FROM scratch
COPY build/rootfs/ /
COPY bin/distro /bin/distro
ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin
VOLUME /var/lib/distro
VOLUME /var/lib/kubelet
VOLUME /var/log
ENTRYPOINT ["/bin/distro"]
CMD ["server"]
